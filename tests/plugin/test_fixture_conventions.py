"""The fixtures as pytest-redis / pytest-postgresql users expect them, run in nested pytest sessions.

String URL/DSN fixtures that never print a password, ``mw_namespace`` beside them, the ``mw_redis`` and
``mw_postgres`` clients, a docstring on every fixture, ``--mw-postgres-exec`` and PostgreSQL discovery that names
every place it looked, one message per unavailable server, and isolation under ``pytest -n 2``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import fakeredis
import psycopg
import pytest
import redis

from mw.tiers.l2 import embedded_server
from pytest_mw.servers import ExecutableNotFound, ServerSpec
from pytest_mw.servers.clients import PostgresDSN, RedisURL
from pytest_mw.servers.postgres_proc import find_postgres_bindir


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Nested run without Hypothesis' plugin, whose setup alone costs about half a second per run here."""
    return pytester.runpytest("-p", "no:hypothesispytest", *args)


def servers(redis_server: ServerSpec, postgres_server: ServerSpec, *, postgres_url: str | None = None) -> list[str]:
    """Options pointing a nested run at the outer session's process servers (noproc, strict)."""
    return [
        "--mw-server-provider", "noproc",
        "--mw-redis-url", redis_server.url,
        "--mw-postgres-dsn", postgres_url or postgres_server.url,
        "--mw-require-servers",
    ]  # fmt: skip


def with_password(url: str, password: str) -> str:
    """The process server's DSN with a password in it (trust auth accepts any)."""
    return url.replace("postgres@", f"postgres:{password}@", 1)


# --- every fixture documented ----------------------------------------------------------------------------------------
EXPECTED_FIXTURES = {
    "mw", "mw_backend", "mw_clock", "mw_config", "mw_factory", "mw_keys", "mw_log_check", "mw_namespace",
    "mw_postgres", "mw_postgres_dsn", "mw_postgres_server", "mw_redis", "mw_redis_server", "mw_redis_url",
}  # fmt: skip


def test_every_mw_fixture_has_a_docstring_in_pytest_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, "--fixtures")
    lines = result.stdout.lines
    documented: dict[str, str] = {}
    for index, line in enumerate(lines):
        found = re.match(r"^(mw\w*)( \[\w+ scope\])? -- ", line)
        if found:
            documented[found.group(1)] = lines[index + 1].strip() if index + 1 < len(lines) else ""
    assert documented.keys() >= EXPECTED_FIXTURES
    undocumented = sorted(name for name, doc in documented.items() if not doc or doc == "no docstring available")
    assert undocumented == []


# --- URL/DSN strings, namespace, password masking ----------------------------------------------------------------
def test_url_and_dsn_are_str_and_their_repr_masks_the_password() -> None:
    url = RedisURL("redis://default:s3cr3t@127.0.0.1:1/0")
    dsn = PostgresDSN("postgresql://postgres:s3cr3t@127.0.0.1:1/mwt_x")
    assert isinstance(url, str) and url == "redis://default:s3cr3t@127.0.0.1:1/0" and f"{url}".endswith("/0")
    assert repr(url) == "RedisURL('redis://default:***@127.0.0.1:1/0')"
    assert "s3cr3t" not in repr(dsn) and "s3cr3t" not in repr([url, dsn]) and dsn.dbname == "mwt_x"
    assert PostgresDSN("host=h dbname=mwt_y password=s3cr3t").dbname == "mwt_y"
    assert "s3cr3t" not in repr(PostgresDSN("host=h dbname=mwt_y password=s3cr3t"))


def test_a_failing_test_never_prints_the_password(
    pytester: pytest.Pytester, redis_proc_server: ServerSpec, postgres_proc_server: ServerSpec
) -> None:
    pytester.makepyfile(
        """
def test_compares(mw_postgres_dsn):
    assert mw_postgres_dsn == "postgresql://elsewhere/db"

def test_raises(mw_postgres_dsn, mw_redis_url):
    dsn, url = mw_postgres_dsn, mw_redis_url
    raise RuntimeError("boom")

def test_dsn_works(mw_postgres_dsn, mw_postgres):
    assert "s3cr3t" in mw_postgres_dsn
    assert mw_postgres.execute("SELECT 1").fetchone() == (1,)
"""
    )
    dsn = with_password(postgres_proc_server.url, "s3cr3t")
    result = run(pytester, "-l", "-vv", *servers(redis_proc_server, postgres_proc_server, postgres_url=dsn))
    result.assert_outcomes(passed=1, failed=2)
    output = result.stdout.str()
    assert "s3cr3t" not in output
    assert "PostgresDSN('postgresql://postgres:***@" in output
    assert "a URL/DSN is compared with its password masked" in output


def test_namespace_is_the_config_namespace_and_the_redis_key_prefix(
    pytester: pytest.Pytester, redis_proc_server: ServerSpec, postgres_proc_server: ServerSpec
) -> None:
    record = pytester.path / "seen.txt"
    pytester.makepyfile(
        f"""
import pathlib, re
import pytest

@pytest.mark.mw_backend("fakeredis", "redis")
def test_one_namespace(mw, mw_config, mw_namespace, mw_redis, mw_backend):
    assert re.fullmatch(r"mwt:[0-9a-f]{{32}}", mw_namespace)
    assert mw_config.namespace == mw_namespace
    mw.set_global_item_typed("doc", "s", "1", {{"v": 1}}, ttl_s=60)
    assert mw_redis.exists(f"{{mw_namespace}}:global:item:doc:s:1") == 1
    mw_redis.set(f"{{mw_namespace}}:raw", b"x")
    with open({str(record)!r}, "a") as out:
        out.write(f"{{mw_backend}} {{mw_namespace}} {{type(mw_redis).__name__}}\\n")
"""
    )
    run(pytester, *servers(redis_proc_server, postgres_proc_server)).assert_outcomes(passed=2)
    seen = dict(line.split(" ", 1) for line in record.read_text().splitlines())
    assert seen.keys() == {"fakeredis", "redis"}
    fake_ns, fake_type = seen["fakeredis"].split()
    real_ns, real_type = seen["redis"].split()
    assert (fake_type, real_type) == ("FakeRedis", "Redis")
    with fakeredis.FakeRedis(server=embedded_server()) as fake:
        assert list(fake.scan_iter(match=fake_ns + ":*")) == []
    with redis.Redis.from_url(redis_proc_server.url) as real:
        assert list(real.scan_iter(match=real_ns + ":*")) == []


def test_mw_postgres_is_a_connection_to_the_tests_database_closed_and_dropped_after(
    pytester: pytest.Pytester, redis_proc_server: ServerSpec, postgres_proc_server: ServerSpec
) -> None:
    record = pytester.path / "seen.txt"
    pytester.makepyfile(
        f"""
import pathlib, psycopg
import pytest

@pytest.mark.mw_backend("redis")
def test_same_database(mw, mw_config, mw_postgres, mw_postgres_dsn):
    assert isinstance(mw_postgres, psycopg.Connection) and not mw_postgres.autocommit
    (dbname,) = mw_postgres.execute("SELECT current_database()").fetchone()
    assert dbname == mw_postgres_dsn.dbname and mw_config.mlt_dsn == mw_postgres_dsn
    mw_postgres.execute("CREATE TABLE seen (n int)")
    mw_postgres.execute("INSERT INTO seen VALUES (1)")
    mw_postgres.commit()
    with psycopg.connect(mw_postgres_dsn) as other:
        assert other.execute("SELECT count(*) FROM seen").fetchone() == (1,)
    pathlib.Path({str(record)!r}).write_text(dbname)
"""
    )
    run(pytester, *servers(redis_proc_server, postgres_proc_server)).assert_outcomes(passed=1)
    with psycopg.connect(postgres_proc_server.url) as admin:
        dbname = record.read_text()
        assert admin.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (dbname,)).fetchone() == (0,)


def test_the_old_redis_url_attributes_still_work_with_a_deprecation_warning(
    pytester: pytest.Pytester, redis_proc_server: ServerSpec, postgres_proc_server: ServerSpec
) -> None:
    pytester.makepyfile(
        """
import pytest

def test_old_api(mw_redis_url, mw_namespace):
    with pytest.deprecated_call():
        assert mw_redis_url.url == mw_redis_url
    with pytest.deprecated_call():
        assert mw_redis_url.namespace == mw_namespace + ":"
    with pytest.deprecated_call():
        assert mw_redis_url.key("k") == mw_namespace + ":k"
    with pytest.deprecated_call():
        client = mw_redis_url.client()
    client.set(mw_namespace + ":k", 1)
"""
    )
    run(pytester, *servers(redis_proc_server, postgres_proc_server)).assert_outcomes(passed=1)


# --- PostgreSQL discovery ------------------------------------------------------------------------------------------
def test_the_tried_list_names_every_place_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No pg_config or pg_ctl on PATH, a versioned directory without the binaries, and a fallback: all four named."""
    (tmp_path / "pg" / "16" / "bin").mkdir(parents=True)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ExecutableNotFound) as info:
        find_postgres_bindir(versioned=str(tmp_path / "pg" / "[0-9]*" / "bin"), fallbacks=(str(tmp_path / "opt"),))
    assert info.value.tried == (
        "pg_config --bindir (no pg_config on $PATH)",
        "pg_ctl on $PATH (not found)",
        f"{tmp_path}/pg/16/bin (no initdb or pg_ctl)",
        f"{tmp_path}/opt (no such directory)",
    )
    assert "--mw-postgres-exec" in str(info.value)
    with pytest.raises(ExecutableNotFound) as none:
        find_postgres_bindir(versioned=str(tmp_path / "none" / "*" / "bin"), fallbacks=())
    assert none.value.tried[2] == f"{tmp_path}/none/*/bin (no match)"


def test_pg_config_and_path_are_named_when_they_point_at_nothing_useful(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    pg_config = bindir / "pg_config"
    pg_config.write_text(f"#!/bin/sh\necho {tmp_path}/nothing\n")
    pg_config.chmod(0o755)
    pg_ctl = bindir / "pg_ctl"
    pg_ctl.write_text("#!/bin/sh\n")
    pg_ctl.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(ExecutableNotFound) as info:
        find_postgres_bindir(versioned=str(tmp_path / "none" / "*"), fallbacks=())
    assert info.value.tried[:2] == (
        f"{pg_config} --bindir = {tmp_path}/nothing (no such directory)",
        f"pg_ctl on $PATH = {pg_ctl} (no initdb)",
    )


def pg_ctl_path() -> str:
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        return os.path.join(out, "pg_ctl")
    return str(find_postgres_bindir() / "pg_ctl")


@pytest.mark.parametrize("where", ["option", "ini"])
def test_mw_postgres_exec_points_at_pg_ctl(pytester: pytest.Pytester, where: str) -> None:
    pg_ctl = pg_ctl_path()
    pytester.makepyfile(
        """
def test_db(mw_postgres_server, mw_postgres):
    assert mw_postgres_server.provider == "process"
    assert mw_postgres.execute("SELECT 1").fetchone() == (1,)
"""
    )
    args = ["--mw-server-provider", "process", "--mw-require-servers"]
    if where == "option":
        args += ["--mw-postgres-exec", pg_ctl]
    else:
        pytester.makeini(f"[pytest]\nmw_postgres_exec = {pg_ctl}\n")
    result = run(pytester, *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"mw postgres: process {pg_ctl}"])


def test_a_missing_pg_ctl_fails_once_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_db(mw_postgres_dsn): pass")
    args = ["-rN", "--mw-server-provider", "process", "--mw-postgres-exec", "/nonexistent/pg_ctl"]
    result = run(pytester, *args, "--mw-require-servers")
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    reason = "initdb/pg_ctl not found; tried: /nonexistent/pg_ctl (its directory /nonexistent) (no such directory)"
    assert output.count(reason) == 1, output
    assert "During handling of the above exception" not in output
    assert "--mw-require-servers is set" in output


def test_an_unreachable_server_error_prints_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_db(mw_postgres_dsn): pass")
    args = ["-rN", "--mw-server-provider", "noproc", "--mw-postgres-dsn", "postgresql://postgres@127.0.0.1:1/x"]
    result = run(pytester, *args, "--mw-require-servers")
    result.assert_outcomes(errors=1)
    assert result.stdout.str().count("cannot reach PostgreSQL at postgresql://postgres@127.0.0.1:1/x") == 1


# --- pytest -n 2 -----------------------------------------------------------------------------------------------------
XDIST_TESTS = 6


def test_xdist_workers_do_not_see_each_others_keys_or_rows(
    pytester: pytest.Pytester, redis_proc_server: ServerSpec, postgres_proc_server: ServerSpec
) -> None:
    """Six tests on two workers sharing one Redis and one PostgreSQL write the same key, table and row names."""
    records = pytester.path / "records"
    records.mkdir()
    pytester.makepyfile(
        f"""
import os, pathlib
import pytest

@pytest.mark.mw_backend("redis")
@pytest.mark.parametrize("n", range({XDIST_TESTS}))
def test_isolated(n, mw, mw_redis, mw_namespace, mw_postgres, mw_postgres_dsn):
    mw.set_global_item_typed("doc", "s", "same", {{"n": n}}, ttl_s=60)
    mw_redis.set(f"{{mw_namespace}}:raw", n)
    assert mw.get_item_typed("doc", "s", "same") == {{"n": n}}
    assert int(mw_redis.get(f"{{mw_namespace}}:raw")) == n
    assert sorted(mw_redis.scan_iter(match=f"{{mw_namespace}}:*")) == [
        f"{{mw_namespace}}:global:item:doc:s:same".encode(), f"{{mw_namespace}}:raw".encode()
    ]
    mw_postgres.execute("CREATE TABLE same (n int)")
    mw_postgres.execute("INSERT INTO same VALUES (%s)", (n,))
    assert mw_postgres.execute("SELECT n FROM same").fetchall() == [(n,)]
    mw.mlt.put_task({{"id": "t", "status": "running", "n": n}})
    assert mw.get_task("t")["n"] == n
    worker = os.environ["PYTEST_XDIST_WORKER"]
    pathlib.Path({str(records)!r}, str(n)).write_text(f"{{worker}} {{mw_namespace}} {{mw_postgres_dsn.dbname}}")
"""
    )
    result = run(pytester, "-n", "2", *servers(redis_proc_server, postgres_proc_server))
    result.assert_outcomes(passed=XDIST_TESTS)
    seen = [path.read_text().split() for path in records.iterdir()]
    assert len(seen) == XDIST_TESTS
    assert {worker for worker, _, _ in seen} == {"gw0", "gw1"}
    namespaces = {namespace for _, namespace, _ in seen}
    databases = {dbname for _, _, dbname in seen}
    assert len(namespaces) == len(databases) == XDIST_TESTS
    with redis.Redis.from_url(redis_proc_server.url) as client:
        assert [key for ns in namespaces for key in client.scan_iter(match=ns + ":*")] == []
    with psycopg.connect(postgres_proc_server.url) as admin:
        left = admin.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (sorted(databases),))
        assert left.fetchall() == []
