"""Why a server could not be had, as exceptions the plugin turns into a skip (or an error in strict mode)."""

from __future__ import annotations

from collections.abc import Sequence


class ServerUnavailable(Exception):
    """A server could not be started or reached; ``reason`` says why, for the skip or error message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ExecutableNotFound(ServerUnavailable):
    """A server binary is missing; the message names every path tried so the fix is obvious."""

    def __init__(self, name: str, tried: Sequence[str], hint: str) -> None:
        self.name = name
        self.tried = tuple(tried)
        super().__init__(f"{name} not found; tried: {', '.join(self.tried)}. {hint}")
