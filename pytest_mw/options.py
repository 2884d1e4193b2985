"""The ``mw`` option group: each option has a ``--mw-...`` flag and an ``mw_...`` ini value.

Precedence is marker or factory argument > command line > environment variable > ini > default, decided with
``is None`` so that an explicit ``false`` is never mistaken for "unset". Two options also have an environment
variable (``MW_TEST_BACKEND``, ``MW_TEST_SERVER_PROVIDER``) so a CI matrix can pick them without editing its test
command; an empty variable counts as unset, so a matrix cell can leave the choice to the ini file. These are the
plugin's own variables: the runtime's ``MW_*`` settings still never reach the ``mw`` fixtures. The result is read
once into a frozen ``ServerOptions`` (defined by the server layer, :mod:`pytest_mw.servers.settings`, and kept
in the config stash, where its factories read it) / ``MwOptions``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from pytest_mw.servers.containers import DEFAULT_POSTGRES_IMAGE, DEFAULT_REDIS_IMAGE
from pytest_mw.servers.provider import PROVIDER_CHOICES
from pytest_mw.servers.settings import SERVER_OPTIONS_KEY, ServerOptions


@dataclass(frozen=True)
class _Option:
    field: str
    flag: str
    help: str
    kind: Literal["string", "bool"] = "string"
    env: str | None = None

    @property
    def ini(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


_OPTIONS = (
    _Option(
        "provider",
        "--mw-server-provider",
        "where real servers come from: auto (the URL if given, else a container if an engine answers, else a "
        "local process), process, container or noproc (default: auto; environment: MW_TEST_SERVER_PROVIDER)",
        env="MW_TEST_SERVER_PROVIDER",
    ),
    _Option("redis_url", "--mw-redis-url", "URL of a running Redis to use (noproc), e.g. redis://127.0.0.1:6379/0"),
    _Option(
        "postgres_dsn",
        "--mw-postgres-dsn",
        "DSN of a running PostgreSQL to use (noproc); its user needs CREATEDB",
    ),
    _Option("redis_exec", "--mw-redis-exec", "redis-server executable for the process provider"),
    _Option(
        "postgres_exec",
        "--mw-postgres-exec",
        "pg_ctl for the process provider (its directory must hold initdb too), or that bin directory; default: "
        "searched in pg_config --bindir, $PATH, /usr/lib/postgresql/*/bin",
    ),
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


def _given(config: pytest.Config, options: Iterable[_Option]) -> tuple[dict[str, Any], dict[str, str]]:
    """The options set on the command line, else in their environment variable, else in the ini file (``is None``
    checks, so an explicit ``false`` counts), and where each came from, for error messages."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in options:
        value, source = config.getoption(option.ini), option.flag
        if value is None and option.env is not None and os.environ.get(option.env, "").strip():
            value, source = os.environ[option.env].strip(), option.env
        if value is None:
            value, source = config.getini(option.ini), option.ini
        if not _unset(value):
            values[option.field] = value
            sources[option.field] = source
    return values, sources


def _check_choice(values: dict[str, Any], sources: dict[str, str], field_name: str, choices: tuple[str, ...]) -> None:
    """A value from the ini file or the environment is not checked by argparse: name its source and the choices."""
    value = values.get(field_name)
    if value is not None and value not in choices:
        raise pytest.UsageError(f"{sources[field_name]} = {value!r}: choose one of {', '.join(choices)}")


def read_server_options(config: pytest.Config) -> ServerOptions:
    """Command line first, then ``MW_TEST_SERVER_PROVIDER``, then ini, then the dataclass default."""
    values, sources = _given(config, _OPTIONS)
    _check_choice(values, sources, "provider", PROVIDER_CHOICES)
    return ServerOptions(**values)


def server_options(config: pytest.Config) -> ServerOptions:
    """The run's options, read once and kept in the config stash."""
    if SERVER_OPTIONS_KEY not in config.stash:
        config.stash[SERVER_OPTIONS_KEY] = read_server_options(config)
    return config.stash[SERVER_OPTIONS_KEY]


# --- the Mw fixtures and checks ---------------------------------------------------------------------------------

BACKEND_CHOICES = ("fakeredis", "redis", "redis-tls", "redis-cluster", "redis-sentinel")
REAL_REDIS_VARIANTS = ("redis-tls", "redis-cluster", "redis-sentinel")
"""Real-Redis backends besides plain ``redis``: chosen with ``--mw-backend``, they also serve every test whose
marker names ``redis``, so one option runs the whole real-Redis suite on that server (parametrized, not copied)."""


def resolve_backend(backend: str, run_backend: str) -> str:
    """A test's backend ``backend`` (its marker's or parameter's) under the run's ``--mw-backend``."""
    return run_backend if backend == "redis" and run_backend in REAL_REDIS_VARIANTS else backend


MLT_CHOICES = ("auto", "sqlite", "postgres")


@dataclass(frozen=True)
class MwOptions:
    """How the ``mw`` fixtures build managers and which automatic checks run, read once per session.

    ``backend`` is the default for tests without a ``mw_backend`` marker; ``mlt`` ``auto`` means in-memory SQLite
    on fakeredis and a per-test PostgreSQL database on real Redis.
    """

    backend: str = "fakeredis"
    mlt: str = "auto"
    strict_keys: bool = False
    check_logs: bool = False
    lint: tuple[str, ...] = ()


_MW_OPTIONS = (
    _Option(
        "backend",
        "--mw-backend",
        "L2 of the mw/mw_config fixtures: fakeredis (embedded, the default), redis (a real server from "
        "--mw-server-provider), redis-tls (a TLS-only local redis-server, client certificates, the runtime as a "
        "least-privilege ACL user), redis-cluster (a local Redis Cluster: 3 primaries, a replica each) or "
        "redis-sentinel (a local primary, replica and 3 sentinels); each variant also serves tests marked redis; a "
        "mw_backend marker overrides it per test (environment: MW_TEST_BACKEND)",
        env="MW_TEST_BACKEND",
    ),
    _Option(
        "mlt",
        "--mw-mlt",
        "Mlt of the mw/mw_config fixtures: auto (in-memory SQLite on fakeredis, PostgreSQL on redis), sqlite or "
        "postgres",
    ),
    _Option(
        "strict_keys",
        "--mw-strict-keys",
        "check every test's cache keys: no double prefix, typed global writes only, write/read/delete on one key",
        "bool",
    ),
    _Option(
        "check_logs",
        "--mw-check-logs",
        "fail a test whose log records contain a double-prefixed key (global:item:global:item:)",
        "bool",
    ),
)

LINT_HELP = "run mw-lint over PATH (repeatable) and report each finding as a failing test item"

MW_OPTIONS_KEY = pytest.StashKey["MwOptions"]()


def add_mw_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """Register the fixture/check options in the ``mw`` group and their ini twins."""
    for option in _MW_OPTIONS:
        if option.kind == "bool":
            group.addoption(option.flag, action="store_true", default=None, dest=option.ini, help=option.help)
        else:
            choices = BACKEND_CHOICES if option.field == "backend" else MLT_CHOICES
            group.addoption(option.flag, choices=choices, default=None, dest=option.ini, help=option.help)
        parser.addini(option.ini, option.help, type=option.kind, default=None)
    group.addoption("--mw-lint", action="append", default=None, dest="mw_lint", metavar="PATH", help=LINT_HELP)
    parser.addini("mw_lint", LINT_HELP + " (paths relative to the ini file)", type="paths", default=[])


def read_mw_options(config: pytest.Config) -> MwOptions:
    """Command line first, then ``MW_TEST_BACKEND`` (backend only), then ini, then the default; lint paths from the
    command line are relative to the cwd."""
    values, sources = _given(config, _MW_OPTIONS)
    _check_choice(values, sources, "backend", BACKEND_CHOICES)
    _check_choice(values, sources, "mlt", MLT_CHOICES)
    cli_paths = config.getoption("mw_lint")
    if cli_paths:
        base = config.invocation_params.dir
        values["lint"] = tuple(str(base / path) for path in cli_paths)
    else:
        values["lint"] = tuple(str(path) for path in config.getini("mw_lint") or ())
    return MwOptions(**values)


def mw_options(config: pytest.Config) -> MwOptions:
    """The run's fixture/check options, read once and kept in the config stash."""
    if MW_OPTIONS_KEY not in config.stash:
        config.stash[MW_OPTIONS_KEY] = read_mw_options(config)
    return config.stash[MW_OPTIONS_KEY]
