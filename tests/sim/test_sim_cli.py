"""``mw-sim run`` writes the JSON result, the Markdown report and the plots, and exits 0 only on a pass."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from mw.errors import MltUnavailable, TierUnavailable
from simulations import runner
from simulations.backends import open_backend
from simulations.cli import EXIT_ERROR, EXIT_FAIL, EXIT_PASS, main

QUICK = ["--agents", "6", "--duration", "90", "--warmup", "20", "--quiet"]


def test_run_writes_report_and_passes(tmp_path: Path) -> None:
    # 300 s, not QUICK's 90: in 90 s the herd's true hit ratio is about 0.70 (coalesced callers are misses).
    args = [*QUICK[:2], "--duration", "300", *QUICK[4:]]
    assert main(["run", "simulations/scenarios/hot-key-herd.toml", *args, "--out", str(tmp_path)]) == EXIT_PASS
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["verdict"]["passed"]
    assert "baseline" in result["runs"]
    report = (tmp_path / "report.md").read_text()
    for plot in ("hit_ratio.png", "mlt_qps.png", "l0_size.png", "loads_per_expiry.png"):
        assert (tmp_path / plot).stat().st_size > 1000
        assert f"]({plot})" in report
    assert (tmp_path / "logs" / "cached.log").exists()


def test_failing_verdict_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = tmp_path / "strict.toml"
    source = Path("simulations/scenarios/hot-key-herd.toml").read_text()
    scenario.write_text(source.replace("hit_ratio_week1 = 0.70", "hit_ratio_week1 = 0.9999"))
    code = main(["run", str(scenario), *QUICK, "--no-baseline", "--out", str(tmp_path / "out")])
    assert code == EXIT_FAIL
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert [c["name"] for c in result["verdict"]["checks"] if not c["passed"]] == ["hit_ratio_week1"]


def test_bad_scenario_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[items]\ncatalogue = 10\n')
    assert main(["run", str(bad), *QUICK]) == EXIT_ERROR
    assert "catalogue" in capsys.readouterr().err


def test_list_names_the_bundled_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == EXIT_PASS
    out = capsys.readouterr().out
    for name in ("staging-synthetic", "hot-key-herd", "task-churn", "week2-prewarm"):
        assert name in out


# --- exit codes: 2 with one line on stderr for usage and infrastructure errors, a traceback for bugs ---------------
def _exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``mw-sim`` expecting exit 2; the one stderr line, which must start ``mw-sim:`` and hold no traceback."""
    assert main(argv) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("mw-sim: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_redis_backend_without_url_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _exit_2(["run", "hot-key-herd", *QUICK, "--backend", "redis", "--out", str(tmp_path)], capsys)
    assert "--redis-url" in err


@pytest.mark.parametrize("flag", ["--redis-url", "--mlt-dsn"])
def test_server_flags_without_redis_backend_exit_2(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Ignoring them would run on fakeredis + SQLite while the user believes the servers were tested.
    err = _exit_2(["run", "hot-key-herd", *QUICK, flag, "postgresql://x:pw@h/db", "--out", str(tmp_path)], capsys)
    assert f"{flag}: only with --backend redis" in err and "pw" not in err


def test_mlt_dsn_of_unknown_scheme_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Such a DSN used to fall back to SQLite in memory without a word.
    argv = ["run", "hot-key-herd", *QUICK, "--backend", "redis", "--redis-url", "redis://127.0.0.1:1"]
    err = _exit_2([*argv, "--mlt-dsn", "mysql://me:pw@h/db", "--out", str(tmp_path)], capsys)
    assert "--mlt-dsn mysql://me:***@h/db: not a postgresql://" in err


def test_unreachable_redis_exits_2_naming_it_without_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "redis://me:s3cr%40t@127.0.0.1:1/0"
    argv = ["run", "hot-key-herd", *QUICK, "--no-baseline", "--backend", "redis", "--redis-url", url]
    err = _exit_2([*argv, "--out", str(tmp_path)], capsys)
    assert "Redis at redis://me:***@127.0.0.1:1/0 is unreachable" in err
    assert "s3cr" not in err
    assert not (tmp_path / "result.json").exists()


def test_unreachable_postgres_exits_2_naming_it_without_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "hot-key-herd", *QUICK, "--backend", "redis", "--redis-url", "redis://127.0.0.1:1"]
    err = _exit_2([*argv, "--mlt-dsn", "postgresql://me:pa%3Ass@127.0.0.1:1/mlt", "--out", str(tmp_path)], capsys)
    assert "PostgreSQL at postgresql://me:***@127.0.0.1:1/mlt is unreachable" in err
    assert "pa%3Ass" not in err and "pa:ss" not in err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--redis-url", "redis://me:pw@h:port_x/0"], "Redis at redis://me:***@h:port_x/0 is not a valid URL"),
        (["--redis-url", "http://me:pw@h"], "Redis at http://me:***@h is not a valid URL"),
        (
            ["--redis-url", "redis://127.0.0.1:1", "--mlt-dsn", "postgresql://me:pw@h/db?bogus=1"],
            "PostgreSQL at postgresql://me:***@h/db?bogus=1 is not a valid DSN",
        ),
    ],
)
def test_malformed_server_urls_exit_2(
    flags: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _exit_2(["run", "hot-key-herd", *QUICK, "--backend", "redis", *flags, "--out", str(tmp_path)], capsys)
    assert expected in err and ":pw@" not in err


def test_unreachable_postgres_beside_a_real_redis_exits_2(
    mw_redis_url: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "hot-key-herd", *QUICK, "--backend", "redis", "--redis-url", str(mw_redis_url)]
    err = _exit_2([*argv, "--mlt-dsn", "postgresql://me:pw@127.0.0.1:1/mlt", "--out", str(tmp_path)], capsys)
    assert "PostgreSQL at postgresql://me:***@127.0.0.1:1/mlt is unreachable" in err and "Redis" not in err


def test_reachable_servers_pass_the_probes(mw_redis_url: Any, mw_postgres_dsn: str) -> None:
    # A process server trusts local connections, so a planted password is accepted; a container's server checks its
    # own (``postgres``), which is then the one that must not reach the description.
    parts = urlsplit(str(mw_postgres_dsn))
    secret = parts.password or "pw@x"
    user = quote(parts.username or "postgres", safe="")
    netloc = f"{user}:{quote(secret, safe='')}@{parts.hostname}:{parts.port}"
    dsn = urlunsplit(parts._replace(netloc=netloc))
    with open_backend("redis", str(mw_redis_url), dsn) as backend:
        assert backend.name == "redis"
        assert f"{user}:***@" in backend.description
        assert f":{quote(secret, safe='')}@" not in backend.description and f":{secret}@" not in backend.description


def test_missing_scenario_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _exit_2(["run", str(tmp_path / "absent.toml"), *QUICK, "--out", str(tmp_path)], capsys)
    assert "absent.toml" in err


def test_unreadable_scenario_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dir.toml").mkdir()
    err = _exit_2(["run", str(tmp_path / "dir.toml"), *QUICK, "--out", str(tmp_path / "out")], capsys)
    assert "dir.toml: cannot read the scenario" in err
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    err = _exit_2(["run", str(latin1), *QUICK, "--out", str(tmp_path / "out")], capsys)
    assert "latin1.toml: cannot read the scenario" in err


def test_bad_toml_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[run\nagents = 3\n')
    err = _exit_2(["run", str(bad), *QUICK, "--out", str(tmp_path / "out")], capsys)
    assert "bad.toml" in err and "line 2" in err


def test_out_that_is_a_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").write_text("")
    err = _exit_2(["run", "hot-key-herd", *QUICK, "--out", str(tmp_path / "taken")], capsys)
    assert "--out" in err and "not a directory" in err


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["run"], ["run", "hot-key-herd", "--agents", "many"], ["run", "x", "--backend", "memcached"]],
)
def test_argparse_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == EXIT_ERROR
    assert "usage: mw-sim" in capsys.readouterr().err


@pytest.mark.parametrize(
    "error",
    [TierUnavailable("L2 redis://me:hunter2@h:6379 is marked down"), MltUnavailable("Mlt query timed out after 1 s")],
)
def test_runtime_tier_errors_mid_run_exit_2(
    error: Exception, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A server that answered the probe and failed during the run: the runtime's own typed error reaches the CLI.
    def fails(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise error

    monkeypatch.setattr(runner, "run_scenario", fails)
    err = _exit_2(["run", "hot-key-herd", *QUICK, "--out", str(tmp_path)], capsys)
    assert err.startswith(f"mw-sim: {type(error).__name__}: ") and "hunter2" not in err


def test_a_bug_keeps_its_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise KeyError("cached")

    monkeypatch.setattr(runner, "run_scenario", bug)
    with pytest.raises(KeyError, match="cached"):
        main(["run", "hot-key-herd", *QUICK, "--out", str(tmp_path)])


def test_run_without_the_sim_extra_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    err = _exit_2(["run", "hot-key-herd", *QUICK, "--out", str(tmp_path)], capsys)
    assert "matplotlib" in err and "pytest-mw[sim]" in err


def test_list_without_rich_prints_a_plain_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m == "rich" or m.startswith("rich.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rich", None)
    assert main(["list"]) == EXIT_PASS
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:1] == ["scenario"]
    for name in ("staging-synthetic", "hot-key-herd", "task-churn", "week2-prewarm"):
        assert any(line.startswith(name + " ") for line in lines), out
