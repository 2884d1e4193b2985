"""A password planted in the servers' URLs never reaches any output of a full pytest run: the report header, a
failure message, an assertion diff, a captured log line, an exception, the metrics exposition, the JUnit XML.

The password holds URL-reserved characters, so it is looked for raw and percent-encoded. The Redis server is a real
one that checks it (an ACL user made for this test); the local PostgreSQL trusts local connections, so any password
in its DSN connects and can travel everywhere a DSN goes.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
import redis
from psycopg import sql

pytestmark = pytest.mark.mw_real_servers

INNER = '''
import logging

import pytest

from mw import MwConfig, MwManager
from mw.errors import TierUnavailable


def test_uses_both_servers(mw):
    mw.set_global_item_typed("doc", "s", "1", {"v": 1})
    assert mw.get_item_typed("doc", "s", "1") == {"v": 1}


def test_failure_shows_config(mw):
    assert repr(mw.config) == "something else"


def test_failure_diffs_urls(mw_redis_url, mw_postgres_dsn):
    assert mw_redis_url == mw_postgres_dsn


def dead_port(url):
    """The same user and password on a port nobody listens on (a helper: --showlocals prints a test's own str
    locals as they are, which no plugin can mask)."""
    return MwConfig(redis_url=url.split("@", 1)[0] + "@127.0.0.1:1/0", tier_retry_s=0)


def test_dead_redis_is_logged_and_raised(mw_redis_url, caplog):
    caplog.set_level(logging.DEBUG)
    dead = MwManager(organ_id="leak", config=dead_port(mw_redis_url))
    dead.set_global_item_typed("doc", "s", "2", {"v": 2})
    logging.getLogger("leak").warning("manager %r config %r", dead, dead.config)
    with pytest.raises(TierUnavailable) as caught:
        dead.cluster.l2.get("probe")
    logging.getLogger("leak").error("L2 said: %s", caught.value)
    raise AssertionError(f"planted failure: {caught.value}")


def test_metrics_exposition(mw):
    prometheus_client = pytest.importorskip("prometheus_client")
    from mw.metrics import MwCollector

    registry = prometheus_client.CollectorRegistry()
    registry.register(MwCollector())
    mw.get_item_typed("doc", "s", "missing")
    print(prometheus_client.generate_latest(registry).decode())
    assert False, "show the captured output"
'''


def with_password(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{user}:{quote(password, safe='')}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def leaks(text: str, password: str) -> list[str]:
    """The forms of ``password`` found in ``text``: raw, percent-encoded (either way of encoding a space)."""
    forms = {password, quote(password, safe=""), quote(password, safe="").replace("%20", "+")}
    return sorted(form for form in forms if form in text)


def test_leaks_finds_a_planted_password() -> None:
    password = "pw@:/#?&=% x"
    assert leaks(f"redis://u:{quote(password, safe='')}@h", password) == [quote(password, safe="")]
    assert leaks(f"said {password}", password) == [password]
    assert leaks("redis://u:***@h", password) == []


def test_no_output_of_a_run_holds_the_password(
    pytester: pytest.Pytester, mw_redis_url: str, mw_postgres_server: Any, tmp_path: Path
) -> None:
    password = f"Lk{secrets.token_hex(4)}@:/#?&=%+'!"
    user = f"leak_{secrets.token_hex(3)}"
    admin = redis.Redis.from_url(str(mw_redis_url))
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
    # A PostgreSQL role with that password, allowed to make the nested run's databases: a server that checks
    # passwords (a container's) checks it; a local one that trusts local connections accepts it anyway.
    with psycopg.connect(mw_postgres_server.url, autocommit=True) as pg:
        pg.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(sql.Identifier(user), sql.Literal(password))
        )
    try:
        redis_url = with_password(str(mw_redis_url), user, password)
        assert redis.Redis.from_url(redis_url).ping()  # the server checks it: a wrong password would fail here
        dsn = with_password(mw_postgres_server.url, user, password)
        with psycopg.connect(dsn):
            pass  # the role connects with the planted password
        pytester.makepyfile(test_inner=INNER)
        junit = tmp_path / "junit.xml"
        result = pytester.runpytest_subprocess(
            "--mw-backend=redis",
            f"--mw-redis-url={redis_url}",
            f"--mw-postgres-dsn={dsn}",
            "--mw-require-servers",
            "-rA",
            "-vv",
            "--showlocals",
            f"--junitxml={junit}",
        )
        outcomes = result.parseoutcomes()
        assert outcomes.get("passed") == 1 and outcomes.get("failed") == 4, result.stdout.str()
        output = "\n".join([result.stdout.str(), result.stderr.str(), junit.read_text()])
        assert ":***@" in output  # the URLs were shown, masked
        assert leaks(output, password) == [], output
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()
        with psycopg.connect(mw_postgres_server.url, autocommit=True) as pg:
            pg.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))


def test_an_unreachable_server_under_require_servers_names_it_masked(pytester: pytest.Pytester) -> None:
    """The error a CI run shows when its servers are missing quotes their URLs: masked too."""
    password = f"Lk{secrets.token_hex(4)}@:/#?&=%+'!"
    redis_url = f"redis://leak:{quote(password, safe='')}@127.0.0.1:1/0"
    dsn = f"postgresql://leak:{quote(password, safe='')}@127.0.0.1:1/db"
    pytester.makepyfile(test_inner="def test_needs_both(mw_redis_url, mw_postgres_dsn):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--mw-server-provider=noproc",
        f"--mw-redis-url={redis_url}",
        f"--mw-postgres-dsn={dsn}",
        "--mw-require-servers",
        "-rA",
    )
    output = result.stdout.str() + result.stderr.str()
    assert result.ret != 0 and "cannot reach Redis at redis://leak:***@127.0.0.1:1/0" in output, output
    assert leaks(output, password) == [], output
