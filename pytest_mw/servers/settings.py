"""The server settings of a test run, as the server layer sees them.

The plugin's option module reads them from the command line, the environment and the ini file at configure time and
keeps them in the config stash; the factories read them from there. The server layer thus never imports the plugin's
option parsing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pytest_mw.servers.containers import DEFAULT_POSTGRES_IMAGE, DEFAULT_REDIS_IMAGE
from pytest_mw.servers.provider import ProviderChoice


@dataclass(frozen=True)
class ServerOptions:
    """Server settings for the run; ``None`` URLs mean "none given" (``auto`` then starts its own server)."""

    provider: ProviderChoice = "auto"
    redis_url: str | None = None
    postgres_dsn: str | None = None
    redis_exec: str | None = None
    postgres_exec: str | None = None
    redis_image: str = DEFAULT_REDIS_IMAGE
    postgres_image: str = DEFAULT_POSTGRES_IMAGE
    require_servers: bool = False


SERVER_OPTIONS_KEY = pytest.StashKey[ServerOptions]()


def stashed_server_options(config: pytest.Config) -> ServerOptions:
    """The run's settings, which the plugin stashed when pytest was configured (defaults if it never ran)."""
    return config.stash.get(SERVER_OPTIONS_KEY, ServerOptions())
