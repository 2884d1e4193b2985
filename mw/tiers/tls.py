"""TLS for the L2 tier's sync client: one shared ``SSLContext``, and the handshake under the connect deadline.

redis-py's sync ``SSLConnection`` builds a new ``SSLContext`` for every connection (``create_default_context``
reads the system's whole CA store: about 35 ms of CPU, holding the GIL) and runs the handshake under the command
timeout. A herd of new connections (16 threads in each of 4 processes) then took 3.7 s to send its first command,
and the 0.5 s command timeout marked a healthy L2 down. Here a context is built once per set of TLS settings and
files (rebuilt when a file changes, so rotated certificates are picked up), and the TCP connect and the handshake
both run under ``socket_connect_timeout`` (``MW_REDIS_CONNECT_TIMEOUT_S``); commands keep their timeout. OCSP
validation, which the runtime never asks for, keeps redis-py's own path.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any

import redis.connection

__all__ = ["HandshakeDeadlineSSLConnection", "shared_context"]

_CONTEXTS: dict[tuple[Any, ...], ssl.SSLContext] = {}
"""One context per TLS settings and file versions; a rotated file's context replaces its old one."""
_LOCK = threading.Lock()


def _stamp(path: str | None) -> tuple[object, ...]:
    """What tells a file's versions apart: a replacement keeping the mtime (``cp -p``, a secret mount's symlink swap)
    still changes the inode, size or ctime; a CA directory's files are stamped one by one."""
    if not path:
        return (path,)
    try:
        if os.path.isdir(path):
            return (path, *(_stamp(os.path.join(path, name)) for name in sorted(os.listdir(path))))
        st = os.stat(path)
    except OSError:
        return (path, -1)
    return (path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def shared_context(conn: Any) -> ssl.SSLContext:
    """The context for ``conn``'s TLS settings, built as redis-py builds it, once per settings and file versions."""
    files = {name: getattr(conn, name, None) for name in ("certfile", "keyfile", "ca_certs", "ca_path")}
    key = (
        *(_stamp(path) for path in files.values()),
        getattr(conn, "ca_data", None),
        getattr(conn, "certificate_password", None),
        getattr(conn, "cert_reqs", ssl.CERT_REQUIRED),
        getattr(conn, "check_hostname", True),
        getattr(conn, "ssl_min_version", None),
        getattr(conn, "ssl_ciphers", None),
        tuple(getattr(conn, "ssl_include_verify_flags", None) or ()),
        tuple(getattr(conn, "ssl_exclude_verify_flags", None) or ()),
    )
    with _LOCK:
        context = _CONTEXTS.get(key)
        if context is None:
            paths = tuple(files.values())
            for old in [k for k in _CONTEXTS if _paths(k) == paths]:  # a rotation replaces, never accumulates
                del _CONTEXTS[old]
            context = _CONTEXTS[key] = _build(conn, files)
        return context


def _paths(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(stamp[0] for stamp in key[:4])


def _build(conn: Any, files: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = bool(getattr(conn, "check_hostname", True))
    context.verify_mode = getattr(conn, "cert_reqs", ssl.CERT_REQUIRED)
    for flag in getattr(conn, "ssl_include_verify_flags", None) or ():
        context.verify_flags |= flag
    for flag in getattr(conn, "ssl_exclude_verify_flags", None) or ():
        context.verify_flags &= ~flag
    if files["certfile"] or files["keyfile"]:
        context.load_cert_chain(
            certfile=files["certfile"], keyfile=files["keyfile"], password=getattr(conn, "certificate_password", None)
        )
    ca_data = getattr(conn, "ca_data", None)
    if files["ca_certs"] is not None or files["ca_path"] is not None or ca_data is not None:
        context.load_verify_locations(cafile=files["ca_certs"], capath=files["ca_path"], cadata=ca_data)
    if getattr(conn, "ssl_min_version", None) is not None:
        context.minimum_version = conn.ssl_min_version
    if getattr(conn, "ssl_ciphers", None):
        context.set_ciphers(conn.ssl_ciphers)
    return context


class HandshakeDeadlineSSLConnection(redis.connection.SSLConnection):
    """``SSLConnection`` with a shared context, and the connect and the handshake under ``socket_connect_timeout``."""

    def _connect(self) -> Any:
        if getattr(self, "ssl_validate_ocsp", False) or getattr(self, "ssl_validate_ocsp_stapled", False):
            return super()._connect()  # type: ignore[no-untyped-call]
        sock = redis.connection.Connection._connect(self)  # type: ignore[no-untyped-call]  # TCP only
        sock.settimeout(self.handshake_timeout())
        try:
            wrapped = shared_context(self).wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        wrapped.settimeout(self.socket_timeout)
        return wrapped

    def handshake_timeout(self) -> float | None:
        """The handshake's deadline: the connect's, since a server busy with a herd's handshakes is not a dead one."""
        return self.socket_connect_timeout
