"""Configuration is honest: ``MW_*`` variables override the scenario's ``[runtime]``, and every run says which value
it ran with and where it came from (passwords masked)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from simhelpers import Run, check, failed, small

from mw import MwConfig
from mw.errors import ConfigError
from simulations import settings
from simulations.backends import Backend
from simulations.cli import EXIT_ERROR, EXIT_FAIL, EXIT_PASS, main
from simulations.report import write_all
from simulations.runner import run_scenario
from simulations.scenario import load_scenario, parse_scenario

QUICK = ["--agents", "6", "--duration", "90", "--warmup", "20", "--quiet"]
STORES = {"redis_url": None, "mlt_dsn": None, "namespace": "test"}
TASKS = {"create_per_agent_s": 0.05, "reads_per_agent_s": 1.0}
"""Enough tasks in a quick run for running ones to be cached and read (staging-synthetic has a handful an hour)."""


def effective(runtime: dict[str, Any] | None = None, **kw: Any) -> dict[str, dict[str, Any]]:
    runtime = load_scenario("staging-synthetic").runtime if runtime is None else runtime
    return settings.for_run(runtime, STORES, caching=True, rng_seed="s", **kw).as_dict()


# --- the layers ----------------------------------------------------------------------------------------------------
def test_env_overrides_the_scenario(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_TASK_TTL_RUNNING_S", "100")
    monkeypatch.setenv("MW_L2_TTL_S", "60")
    rows = effective()
    assert rows["task_ttls_s.running"] == {
        "value": 100.0,
        "source": "env MW_TASK_TTL_RUNNING_S",
        "note": "the default is 10.0",
    }
    assert rows["l2_ttl_s"] == {"value": 60.0, "source": "env MW_L2_TTL_S", "note": "the scenario says 3600"}
    assert rows["l1_ttl_s"]["source"] == "scenario" and rows["codec"]["source"] == "default"
    assert load_scenario("staging-synthetic").config().task_ttls_s["running"] == 100.0


def test_a_partial_task_ttl_env_changes_only_its_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_TASK_TTL_RUNNING_S", "100")
    rows = effective({"task_ttls_s": {"running": 5, "queued": 7}})
    assert (rows["task_ttls_s.running"]["value"], rows["task_ttls_s.running"]["source"]) == (
        100.0,
        "env MW_TASK_TTL_RUNNING_S",
    )
    assert rows["task_ttls_s.running"]["note"] == "the scenario says 5"
    assert (rows["task_ttls_s.queued"]["value"], rows["task_ttls_s.queued"]["source"]) == (7, "scenario")
    assert (rows["task_ttls_s.completed"]["value"], rows["task_ttls_s.completed"]["source"]) == (600.0, "default")


def test_the_simulator_beats_the_env_and_overrides_beat_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_L2_TTL_S", "60")
    monkeypatch.setenv("MW_RNG_SEED", "7")
    monkeypatch.setenv("MW_NAMESPACE", "prod")
    rows = effective(overrides={"l2_ttl_s": 5, "rng_seed": "mine"})
    assert rows["l2_ttl_s"]["value"] == 5 and rows["l2_ttl_s"]["source"] == "override"
    assert rows["l2_ttl_s"]["note"] == "MW_L2_TTL_S=60 in the environment not applied: the run's overrides set it"
    assert rows["rng_seed"]["value"] == "mine" and rows["rng_seed"]["source"] == "override"
    assert rows["namespace"]["value"] == "test" and rows["namespace"]["source"] == "simulator"
    assert rows["namespace"]["note"].startswith("MW_NAMESPACE=prod in the environment not applied: the backend")


def test_pubsub_is_on_and_the_env_or_the_scenario_may_turn_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated nodes are clusters of their own joined by the simulated bus: nothing forces ``pubsub``."""
    monkeypatch.delenv("MW_PUBSUB", raising=False)
    assert effective()["pubsub"] == {"value": True, "source": "default"}
    off = {"value": False, "source": "scenario", "note": "the default is True"}
    assert effective({"pubsub": False})["pubsub"] == off
    monkeypatch.setenv("MW_PUBSUB", "false")
    assert effective()["pubsub"] == {"value": False, "source": "env MW_PUBSUB", "note": "the default is True"}
    ray = effective(pubsub=True)["pubsub"]  # the Ray engine's shards are processes: it forces the bus on
    assert ray["value"] is True and ray["source"] == "simulator"
    assert ray["note"] == f"MW_PUBSUB=false in the environment not applied: {settings.WHY_BUS}"


def test_every_setting_has_a_source_and_its_variable() -> None:
    rows = effective(environ={})
    names = [f.name for f in dataclasses.fields(MwConfig) if f.name != "task_ttls_s"]
    assert set(names) < set(rows)
    assert {n.split(".")[1] for n in rows if n.startswith("task_ttls_s.")} == set(MwConfig().task_ttls_s)
    assert {r["source"] for r in rows.values()} == {"default", "scenario", "simulator"}
    for name in rows:  # mw reads each setting from the variable the report names
        var = settings.variable(name)
        if name == "rng_seed":
            assert MwConfig.from_env({var: "not valid!"}).rng_seed == "not valid!"
            continue
        with pytest.raises(ConfigError) as raised:
            MwConfig.from_env({var: "not valid!"})
        assert raised.value.variable == var


def test_a_changed_env_cannot_be_reported_as_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = load_scenario("staging-synthetic").runtime
    config = settings.for_run(runtime, STORES, caching=True, rng_seed="s").config
    monkeypatch.setenv("MW_L2_TTL_S", "60")
    with pytest.raises(ConfigError, match="MW_L2_TTL_S"):
        settings.reported(config, runtime, caching=True)


def test_parsing_a_scenario_does_not_read_the_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_L2_TTL_S", "bogus")
    monkeypatch.setenv("MW_TASK_TTL_RUNING_S", "100")  # a typo mw refuses
    scenario = load_scenario("staging-synthetic")
    assert parse_scenario({"name": "x", "runtime": {"l2_ttl_s": 5}}).runtime == {"l2_ttl_s": 5}
    assert scenario.config(environ={}).l2_ttl_s == 3600
    with pytest.raises(ConfigError, match="MW_L2_TTL_S"):
        scenario.config()  # a run reads it, and refuses it


# --- real runs -----------------------------------------------------------------------------------------------------
def test_env_running_ttl_reaches_the_run_and_fails_its_check(simulate: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    honest = simulate("staging-synthetic", tasks=TASKS, run={"agents": 6, "duration_s": 90.0, "warmup_s": 20.0})
    assert check(honest, "running_ttl")["passed"], "control: the scenario's own TTLs pass"
    monkeypatch.setenv("MW_TASK_TTL_RUNNING_S", "100")
    broken = simulate("staging-synthetic", tasks=TASKS, run={"agents": 6, "duration_s": 90.0, "warmup_s": 20.0})
    cached = broken["runs"]["cached"]
    assert cached["config"]["task_ttls_s.running"]["source"] == "env MW_TASK_TTL_RUNNING_S"
    # 100 s (+-10 % jitter), cut to the task's lease (60 s in the scenario): far beyond the scenario's 10 s.
    assert 30.0 < cached["task_ttls"]["running"]["max_ttl_applied_s"] <= 110.0
    assert honest["runs"]["cached"]["task_ttls"]["running"]["max_ttl_applied_s"] <= 11.0
    assert failed(broken) == {"running_ttl"}


def test_mw_enabled_false_is_honoured_in_the_cached_run(simulate: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_ENABLED", "false")
    result = simulate("staging-synthetic", run={"agents": 6, "duration_s": 90.0, "warmup_s": 20.0})
    row = result["runs"]["cached"]["config"]["enabled"]
    assert row["value"] is False and row["source"] == "env MW_ENABLED" and "cached one too" in row["note"]
    assert result["runs"]["cached"]["hit_ratio"]["mw_hit_ratio"] == 0.0
    assert "hit_ratio_week1" in failed(result)


def test_cli_reports_env_rows_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = tmp_path / "tasks.toml"
    source = Path("simulations/scenarios/staging-synthetic.toml").read_text()
    scenario.write_text(source.replace("create_per_agent_s = 0.0005", "create_per_agent_s = 0.05"))
    monkeypatch.setenv("MW_TASK_TTL_RUNNING_S", "100")
    monkeypatch.setenv("MW_PUBSUB", "true")
    assert main(["run", str(scenario), *QUICK, "--no-baseline", "--out", str(tmp_path / "out")]) == EXIT_FAIL
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert [c["name"] for c in result["verdict"]["checks"] if not c["passed"]] == ["running_ttl"]
    report = (tmp_path / "out" / "report.md").read_text()
    section = report[report.index("## Configuration") :]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    assert table[0] == "| `task_ttls_s.running` | `100.0` | **env MW_TASK_TTL_RUNNING_S** | the default is 10.0 |"
    pubsub = next(line for line in table if line.startswith("| `pubsub`"))
    assert pubsub == "| `pubsub` | `true` | **env MW_PUBSUB** |  |", "asked for what it got: nothing to explain"


@pytest.mark.parametrize(
    ("variable", "value"), [("MW_TASK_TTL_RUNNING_S", "soon"), ("MW_TASK_TTL_RUNING_S", "100"), ("MW_ENABLED", "2")]
)
def test_a_bad_env_value_exits_2_naming_it(
    variable: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["run", "staging-synthetic", *QUICK, "--out", str(tmp_path)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"mw-sim: ConfigError: {variable}={value!r}: ") and err.count("\n") == 1, err
    assert not (tmp_path / "result.json").exists()


# --- passwords -----------------------------------------------------------------------------------------------------
def assert_no_secret(out: Path, *secrets: str) -> None:
    """No output file (result, report, logs) holds any of ``secrets``."""
    files = [p for p in out.rglob("*") if p.suffix in (".json", ".md", ".log")]
    assert {p.name for p in files} >= {"result.json", "report.md"}
    for path in files:
        text = path.read_text()
        for secret in secrets:
            assert secret not in text, f"{secret!r} in {path.name}"


def test_env_secrets_are_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_REDIS_URL", f"redis://me:{quote('hunter2@cfg', safe='')}@10.0.0.1:6379/0")
    monkeypatch.setenv("MW_MLT_DSN", "postgresql://me:hunter3@cfg@10.0.0.1/mlt")
    main(["run", "staging-synthetic", *QUICK, "--no-baseline", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "result.json").read_text())
    note = result["runs"]["cached"]["config"]["redis_url"]["note"]
    assert note.startswith("MW_REDIS_URL=redis://me:***@10.0.0.1:6379/0 in the environment not applied")
    assert "MW_MLT_DSN=postgresql://me:***@10.0.0.1/mlt" in (tmp_path / "report.md").read_text()
    assert_no_secret(tmp_path, "hunter2", "hunter3")


def planted(url: str, user: str, secret: str) -> tuple[str, list[str]]:
    """``url`` with ``user:secret`` in it (a local test server trusts local connections and accepts it), and what an
    output must never hold: the secret, raw and percent-encoded. A server that checks its own password keeps it; that
    password may be an ordinary word (a container's ``postgres:postgres``), so it is looked for where a URL puts it."""
    parts = urlsplit(url)
    own = parts.password
    secret = own or secret
    netloc = f"{quote(parts.username or user, safe='')}:{quote(secret, safe='')}@{parts.hostname}:{parts.port}"
    forms = {secret, quote(secret, safe="")}
    needles = [f":{form}@" for form in forms] if own else sorted(forms)
    return urlunsplit(parts._replace(netloc=netloc)), needles


def test_server_secrets_are_masked(mw_redis_url: Any, mw_postgres_dsn: str, tmp_path: Path) -> None:
    redis_url, redis_needles = planted(mw_redis_url, "default", "s3cr3t/r@dis")
    dsn, pg_needles = planted(str(mw_postgres_dsn), "postgres", "s3cr3t/p@stgres")
    secrets = [*redis_needles, *pg_needles]
    flags = ["--no-baseline", "--backend", "redis", "--redis-url", redis_url, "--mlt-dsn", dsn]
    assert main(["run", "hot-key-herd", *QUICK, *flags, "--out", str(tmp_path / "cli")]) in (EXIT_PASS, EXIT_FAIL)
    config = json.loads((tmp_path / "cli" / "result.json").read_text())["runs"]["cached"]["config"]
    assert config["redis_url"]["value"].startswith("redis://default:***@")
    assert config["mlt_dsn"]["source"] == "simulator" and ":***@" in config["mlt_dsn"]["value"]
    assert_no_secret(tmp_path / "cli", *secrets)
    # An override (the API's way to break a configuration) quotes its URL in the result's params too.
    scenario = small("hot-key-herd", run={"agents": 4, "duration_s": 60.0, "warmup_s": 10.0})
    backend = Backend("redis", str(mw_redis_url), str(mw_postgres_dsn), "test servers")
    result = run_scenario(scenario, backend, overrides={"redis_url": redis_url}, baseline=False)
    row = result["runs"]["cached"]["config"]["redis_url"]
    assert row["source"] == "override" and row["value"].startswith("redis://default:***@")  # masked in the summary
    write_all(result, tmp_path / "api")
    assert_no_secret(tmp_path / "api", *secrets)
