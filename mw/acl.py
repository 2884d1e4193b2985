"""The least-privilege Redis ACL of a deployment: what the runtime's user may do, and nothing more.

The runtime reads and writes only keys under its namespace and talks only on its namespace's channels, with the
commands below (the Lua lease scripts run ``GET``, ``SET``, ``DEL``, ``PEXPIRE`` and ``PUBLISH``, which the ACL
checks inside scripts too). No ``KEYS``, ``FLUSHALL``, ``FLUSHDB``, ``CONFIG``, ``DEBUG``, ``CLIENT KILL`` or
``SHUTDOWN``: an operator's tools use another user. ``SCAN`` (``RedisTier.scan_keys``, for tools and tests; no read
or write path scans) is not filtered by key patterns: the user can list other namespaces' key names, never read or
change them. ``SELECT`` is for a URL's ``/db`` other than 0, ``WAIT`` for ``MW_REDIS_WAIT_REPLICAS``.
``docs/runtime.md`` shows the ``ACL SETUSER`` line; the plugin's TLS test server runs every real-Redis test as this
user, which is what proves the list complete.
"""

from __future__ import annotations

from mw.errors import ConfigError
from mw.keys import check_namespace

__all__ = ["CLUSTER_COMMANDS", "RUNTIME_COMMANDS", "acl_rules", "acl_setuser"]

RUNTIME_COMMANDS = (
    "get",
    "mget",
    "set",
    "del",
    "pexpire",
    "pttl",
    "scan",
    "eval",
    "evalsha",
    "publish",
    "multi",
    "exec",
    "discard",
    "subscribe",
    "unsubscribe",
    "ping",
    "select",
    "wait",
)
"""Every command the runtime sends. ``AUTH`` and ``HELLO`` are always allowed; redis-py's handshake also sends
``CLIENT SETINFO`` (Redis 7.2+), whose refusal it ignores, and which Redis 7.0 does not know as an ACL name."""


CLUSTER_COMMANDS = ("cluster|slots", "command")
"""What redis-py's cluster client also sends (``MW_REDIS_CLUSTER``): the slot map and the command table it routes
by. A cluster does not share ACL users between nodes: the user is set on every node."""


def acl_rules(namespace: str, *, cluster: bool = False) -> list[str]:
    """The ACL rules of the runtime's user for ``namespace`` (an empty namespace owns every key and channel)."""
    check_namespace(namespace)
    pattern = f"{namespace}:*" if namespace else "*"
    commands = (*RUNTIME_COMMANDS, *(CLUSTER_COMMANDS if cluster else ()))
    return ["resetkeys", f"~{pattern}", "resetchannels", f"&{pattern}", "-@all", *(f"+{c}" for c in commands)]


def acl_setuser(user: str, password: str, namespace: str, *, cluster: bool = False) -> list[str]:
    """The ``ACL SETUSER`` command (as arguments) that creates or resets the runtime's user."""
    if not user or any(c.isspace() for c in user):
        raise ConfigError("user", user, "an ACL user name is one word")
    if not password or any(c.isspace() for c in password):
        raise ConfigError("password", "***", "an ACL password is one word, not empty")
    return ["ACL", "SETUSER", user, "reset", "on", f">{password}", *acl_rules(namespace, cluster=cluster)]
