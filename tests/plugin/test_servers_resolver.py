"""The resolver picks providers in the documented order and explains every failure in one message."""

from __future__ import annotations

import pytest

from mw.secrets import mask_secrets
from pytest_mw.servers import ServerSpec, ServerUnavailable
from pytest_mw.servers.clients import with_dbname
from pytest_mw.servers.noproc import RedisNoProc
from pytest_mw.servers.provider import ProviderChoice, candidates, describe, resolve, start_first
from pytest_mw.servers.spec import Kind


def _providers(kind: Kind, choice: ProviderChoice, url: str | None = None) -> list[str]:
    return [server.provider for server in candidates(kind, choice, url=url)]


def test_auto_prefers_a_given_url_else_container_then_process() -> None:
    assert _providers("redis", "auto", url="redis://h:1/0") == ["noproc"]
    assert _providers("redis", "auto") == ["container", "process"]
    assert _providers("postgres", "auto") == ["container", "process"]
    for choice in ("process", "container", "noproc"):
        assert _providers("postgres", choice) == [choice]
    with pytest.raises(ValueError, match="unknown server provider"):
        candidates("redis", "docker")  # type: ignore[arg-type]


def test_start_first_collects_every_reason() -> None:
    with pytest.raises(ServerUnavailable) as info:
        start_first([RedisNoProc("redis://127.0.0.1:1/0", 1), RedisNoProc("redis://127.0.0.1:2/0", 1)])
    assert info.value.reason.count("noproc: cannot reach Redis") == 2
    assert "127.0.0.1:1/0" in info.value.reason and "127.0.0.1:2/0" in info.value.reason


def test_resolve_noproc_uses_the_url(redis_proc_server: ServerSpec) -> None:
    server, spec = resolve("redis", "noproc", url=redis_proc_server.url)
    assert spec == ServerSpec("redis", redis_proc_server.url, "noproc")
    server.stop()


def test_describe_names_the_plan_and_hides_passwords() -> None:
    assert describe("redis", "auto", image="redis:7") == "redis: container redis:7, else process redis-server"
    assert (
        describe("postgres", "noproc", url="postgresql://u:pw@h:5/db") == "postgres: noproc postgresql://u:***@h:5/db"
    )
    assert mask_secrets("host=h password=pw dbname=x") == "host=h password=*** dbname=x"


def test_with_dbname_keeps_urls_urls() -> None:
    assert (
        with_dbname("postgresql://u:p@h:5/postgres?sslmode=disable", "t1") == "postgresql://u:p@h:5/t1?sslmode=disable"
    )
    assert "dbname=t1" in with_dbname("host=h port=5 dbname=postgres", "t1")
