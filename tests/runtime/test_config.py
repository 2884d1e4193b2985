"""MwConfig: read from the environment at call time, every bad value named (defect 12)."""

from __future__ import annotations

import pytest

from mw import ConfigError, MwConfig, MwManager
from mw.config import DEFAULT_TASK_TTLS_S


def test_defaults_match_the_documented_table() -> None:
    c = MwConfig.from_env({})
    assert c.enabled is True
    assert c.l1_ttl_s == 30 and c.l2_ttl_s == 3600
    assert c.redis_url is None and c.mlt_dsn is None
    assert dict(c.task_ttls_s) == DEFAULT_TASK_TTLS_S
    assert c.task_ttl_s("running") == 10 and c.task_ttl_s("completed") == 600
    assert c.task_ttl_s("archived") == 30, "unknown statuses take the default TTL"
    assert c.negative_ttl_s == 30


def test_environment_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_L1_TTL_S", "12")
    assert MwConfig.from_env().l1_ttl_s == 12
    monkeypatch.setenv("MW_L1_TTL_S", "7.5")
    monkeypatch.setenv("MW_TASK_TTL_RUNNING_S", "30")
    monkeypatch.setenv("MW_ENABLED", "false")
    c = MwConfig.from_env()
    assert c.l1_ttl_s == 7.5 and c.task_ttl_s("running") == 30 and c.enabled is False


def test_manager_reads_the_environment_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_ENABLED", "0")
    monkeypatch.setenv("MW_NAMESPACE", "cfgtest")
    m = MwManager("envreader")
    assert m.enabled is False and m.memory_metrics()["mw_enabled"] is False
    m.close()


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("MW_L1_TTL_S", "abc"),
        ("MW_L2_TTL_S", "-1"),
        ("MW_TASK_TTL_RUNNING_S", "nan"),
        ("MW_ENABLED", "maybe"),
        ("MW_L0_MAX_ITEMS", "0"),
        ("MW_L0_MAX_BYTES", "1.5"),
        ("MW_REDIS_URL", "http://x"),
        ("MW_MLT_DSN", "mysql://x"),
        ("MW_CODEC", "pickle"),
        ("MW_TASK_TTL_COMPLETE_S", "5"),
    ],
)
def test_bad_values_raise_config_error_naming_variable_and_value(var: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        MwConfig.from_env({var: raw})
    assert info.value.variable == var and info.value.value == raw
    assert var in str(info.value) and repr(raw) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_zero_ttl_is_kept_not_replaced_by_a_default() -> None:
    c = MwConfig.from_env({"MW_L1_TTL_S": "0", "MW_TASK_TTL_COMPLETED_S": "0", "MW_TASK_TTL_NEGATIVE_S": "0"})
    assert c.l1_ttl_s == 0 and c.task_ttl_s("completed") == 0 and c.negative_ttl_s == 0


def test_equal_configs_are_equal_and_hashable() -> None:
    a, b = MwConfig.from_env({"MW_L1_TTL_S": "5"}), MwConfig.from_env({"MW_L1_TTL_S": "5.0"})
    assert a == b and hash(a) == hash(b)
    assert a != a.replace(l1_ttl_s=6)
    with pytest.raises(TypeError):
        a.task_ttls_s["running"] = 1  # type: ignore[index]


def test_unknown_override_is_an_error() -> None:
    with pytest.raises(ConfigError, match="l1_tll_s"):
        MwConfig.from_env({}, l1_tll_s=3)


def test_typed_errors_keep_their_type_across_processes() -> None:
    """Ray and multiprocessing send exceptions between processes; the caller must still see the type."""
    import copy
    import pickle

    from mw import KeyGrammarError, ValueTooLargeError

    for err in (
        ConfigError("MW_X", "y", "bad"),
        KeyGrammarError("kind", "a:b", "colon"),
        ValueTooLargeError("k", 9, 1),
    ):
        back = pickle.loads(pickle.dumps(err))  # the transport's serialisation, not a cache value
        assert type(back) is type(err) and str(back) == str(err) and copy.copy(err).args == err.args


def test_rng_seed_makes_jitter_replayable_and_independent_of_the_global_stream() -> None:
    import random

    import mw

    def ttls(seed: int) -> list[float]:
        m = MwManager("j", MwConfig(namespace=f"rng{seed}{random.random()}", rng_seed=seed, ttl_jitter=0.5))
        try:
            random.seed(0)  # other code touching the global stream must not shift ours
            return [m.cache_task_row({"id": i, "status": "completed"}) for i in range(5)]
        finally:
            m.close()
            mw.close_all()

    assert ttls(7) == ttls(7) != ttls(8)
