"""Choose and start a server for a kind: ``auto``, ``process``, ``container`` or ``noproc``.

``auto`` takes the noproc URL when one is configured, else a container when an engine answers, else a local process;
every attempt's reason is kept so an unavailable server explains itself in one message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from pytest_mw.servers.containers import (
    DEFAULT_POSTGRES_IMAGE,
    DEFAULT_REDIS_IMAGE,
    PostgresContainerServer,
    RedisContainerServer,
)
from pytest_mw.servers.errors import ServerUnavailable
from pytest_mw.servers.noproc import DEFAULT_POSTGRES_DSN, DEFAULT_REDIS_URL, PostgresNoProc, RedisNoProc
from pytest_mw.servers.postgres_proc import PostgresProcess
from pytest_mw.servers.redis_proc import RedisProcess
from pytest_mw.servers.spec import Kind, Server, ServerSpec

ProviderChoice = Literal["auto", "process", "container", "noproc"]
PROVIDER_CHOICES: tuple[str, ...] = get_args(ProviderChoice)


def candidates(
    kind: Kind,
    choice: ProviderChoice,
    *,
    url: str | None = None,
    executable: str | None = None,
    image: str | None = None,
) -> list[Server]:
    """The providers to try, in order. ``url`` is the noproc URL/DSN; ``executable`` is ``redis-server``, or for
    PostgreSQL ``pg_ctl`` or its bin directory."""
    if choice not in PROVIDER_CHOICES:
        raise ValueError(f"unknown server provider {choice!r}; choose one of {', '.join(PROVIDER_CHOICES)}")
    noproc: Server
    process: Server
    container: Server
    if kind == "redis":
        noproc = RedisNoProc(url if url is not None else DEFAULT_REDIS_URL)
        process = RedisProcess(executable=executable)
        container = RedisContainerServer(image if image is not None else DEFAULT_REDIS_IMAGE)
    else:
        noproc = PostgresNoProc(url if url is not None else DEFAULT_POSTGRES_DSN)
        process = PostgresProcess(bindir=executable)
        container = PostgresContainerServer(image if image is not None else DEFAULT_POSTGRES_IMAGE)
    if choice == "auto":
        return [noproc] if url is not None else [container, process]
    return [{"noproc": noproc, "process": process, "container": container}[choice]]


def start_first(servers: Sequence[Server]) -> tuple[Server, ServerSpec]:
    """Start the first provider that works; otherwise raise ``ServerUnavailable`` listing every reason."""
    reasons: list[str] = []
    for server in servers:
        try:
            return server, server.start()
        except ServerUnavailable as exc:
            reasons.append(f"{server.provider}: {exc.reason}")
    raise ServerUnavailable("; ".join(reasons) or "no provider to try")


def resolve(
    kind: Kind,
    choice: ProviderChoice = "auto",
    *,
    url: str | None = None,
    executable: str | None = None,
    image: str | None = None,
) -> tuple[Server, ServerSpec]:
    """Start a ``kind`` server as ``choice`` says; the caller stops the returned server."""
    return start_first(candidates(kind, choice, url=url, executable=executable, image=image))


def describe(
    kind: Kind,
    choice: ProviderChoice,
    *,
    url: str | None = None,
    executable: str | None = None,
    image: str | None = None,
) -> str:
    """One line for the report header saying what ``resolve`` will try, without starting anything."""
    servers = candidates(kind, choice, url=url, executable=executable, image=image)
    return f"{kind}: {', else '.join(server.label for server in servers)}"
