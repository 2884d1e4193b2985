"""TLS for the L2 tier: a handshake under the connect deadline.

redis-py's sync ``SSLConnection`` sets the command timeout (``socket_timeout``) on the socket before the TLS
handshake, so the handshake, several round trips and a signature, gets the 0.5 s of one command: a herd of new
connections to a busy server timed out and marked a healthy L2 down. Here the handshake runs under the connect
deadline (``MW_REDIS_CONNECT_TIMEOUT_S``); commands keep theirs. The asyncio client already handshakes under its
connect timeout.
"""

from __future__ import annotations

from typing import Any

import redis.connection

__all__ = ["HandshakeDeadlineSSLConnection"]


class HandshakeDeadlineSSLConnection(redis.connection.SSLConnection):
    """``SSLConnection`` whose TCP connect and TLS handshake both run under ``socket_connect_timeout``."""

    def _connect(self) -> Any:
        command_timeout = self.socket_timeout
        self.socket_timeout = self.socket_connect_timeout
        try:
            sock = super()._connect()  # type: ignore[no-untyped-call]
        finally:
            self.socket_timeout = command_timeout
        sock.settimeout(command_timeout)
        return sock
