"""Real Redis and PostgreSQL servers for tests: process, noproc and container providers plus per-test clients.

Modules import redis, psycopg and testcontainers only when a server is actually started, so importing this package is
cheap.
"""

from pytest_mw.servers.errors import ExecutableNotFound, ServerUnavailable
from pytest_mw.servers.spec import Server, ServerSpec

__all__ = ["ExecutableNotFound", "Server", "ServerSpec", "ServerUnavailable"]
