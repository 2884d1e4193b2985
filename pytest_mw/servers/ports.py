"""Free TCP ports, so each server (and each xdist worker's server) gets its own."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port the OS reports free on ``host``; callers retry on a clash since another process may take it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
