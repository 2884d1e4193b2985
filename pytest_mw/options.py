"""The ``mw`` option group: each option has a ``--mw-...`` flag and an ``mw_...`` ini value.

Precedence is factory argument > command line > ini > default, decided with ``is None`` so that an explicit ``false``
or empty value is never mistaken for "unset". The result is read once into a frozen ``ServerOptions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pytest

from pytest_mw.servers.containers import DEFAULT_POSTGRES_IMAGE, DEFAULT_REDIS_IMAGE
from pytest_mw.servers.provider import PROVIDER_CHOICES, ProviderChoice


@dataclass(frozen=True)
class ServerOptions:
    """Server settings for the run; ``None`` URLs mean "none given" (``auto`` then starts its own server)."""

    provider: ProviderChoice = "auto"
    redis_url: str | None = None
    postgres_dsn: str | None = None
    redis_exec: str | None = None
    redis_image: str = DEFAULT_REDIS_IMAGE
    postgres_image: str = DEFAULT_POSTGRES_IMAGE
    require_servers: bool = False


@dataclass(frozen=True)
class _Option:
    field: str
    flag: str
    help: str
    kind: Literal["string", "bool"] = "string"

    @property
    def ini(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


_OPTIONS = (
    _Option(
        "provider",
        "--mw-server-provider",
        "where real servers come from: auto (the URL if given, else a container if an engine answers, else a "
        "local process), process, container or noproc (default: auto)",
    ),
    _Option("redis_url", "--mw-redis-url", "URL of a running Redis to use (noproc), e.g. redis://127.0.0.1:6379/0"),
    _Option(
        "postgres_dsn",
        "--mw-postgres-dsn",
        "DSN of a running PostgreSQL to use (noproc); its user needs CREATEDB",
    ),
    _Option("redis_exec", "--mw-redis-exec", "redis-server executable for the process provider"),
    _Option(
        "redis_image", "--mw-redis-image", f"Redis image for the container provider (default: {DEFAULT_REDIS_IMAGE})"
    ),
    _Option(
        "postgres_image",
        "--mw-postgres-image",
        f"PostgreSQL image for the container provider (default: {DEFAULT_POSTGRES_IMAGE})",
    ),
    _Option(
        "require_servers",
        "--mw-require-servers",
        "fail instead of skipping when a real server is unavailable (for CI)",
        "bool",
    ),
)

SERVER_OPTIONS_KEY = pytest.StashKey["ServerOptions"]()


def add_server_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """Register the server options in ``group`` (the ``mw`` group) and their ini twins on ``parser``."""
    for option in _OPTIONS:
        if option.kind == "bool":
            group.addoption(option.flag, action="store_true", default=None, dest=option.ini, help=option.help)
        elif option.field == "provider":
            group.addoption(option.flag, choices=PROVIDER_CHOICES, default=None, dest=option.ini, help=option.help)
        else:
            group.addoption(option.flag, default=None, dest=option.ini, help=option.help)
        parser.addini(option.ini, option.help, type=option.kind, default=None)


def _unset(value: Any) -> bool:
    """Older pytest returns "" or [] for an ini value that is not set; only those count as unset."""
    return value is None or (isinstance(value, (str, list)) and len(value) == 0)


def read_server_options(config: pytest.Config) -> ServerOptions:
    """Command line first, then ini, then the dataclass default."""
    values: dict[str, Any] = {}
    for option in _OPTIONS:
        value = config.getoption(option.ini)
        if value is None:
            value = config.getini(option.ini)
        if not _unset(value):
            values[option.field] = value
    provider = values.get("provider", "auto")
    if provider not in PROVIDER_CHOICES:
        raise pytest.UsageError(f"mw_server_provider = {provider!r}: choose one of {', '.join(PROVIDER_CHOICES)}")
    return ServerOptions(**values)


def server_options(config: pytest.Config) -> ServerOptions:
    """The run's options, read once and kept in the config stash."""
    if SERVER_OPTIONS_KEY not in config.stash:
        config.stash[SERVER_OPTIONS_KEY] = read_server_options(config)
    return config.stash[SERVER_OPTIONS_KEY]
