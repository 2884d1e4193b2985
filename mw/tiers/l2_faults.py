"""What a failed Redis call means, from the exception redis-py raised (or a fault injected as one).

The tier reacts by kind (see :class:`Fault`); only an unreachable server opens the breaker, because the
breaker exists to stop paying a timeout per call, and every other kind is an instant reply.
"""

from __future__ import annotations

import asyncio
import enum
import functools

__all__ = ["Fault", "classify", "errors", "reply_text"]


class Fault(enum.Enum):
    UNAVAILABLE = "unavailable"
    """Refused, reset, timed out, cluster/master down: the breaker opens for ``MW_TIER_RETRY_S``."""
    BUSY = "busy"
    """``LOADING``, ``BUSY``, ``TRYAGAIN``, ``OOM``: the server answered at once that it cannot serve now."""
    TOPOLOGY = "topology"
    """``READONLY``, ``MOVED``, ``ASK``: this connection reaches the wrong node; reconnect."""
    PERMISSION = "permission"
    """``NOPERM``, ``NOAUTH``, ``WRONGPASS``: a configuration error, not an outage."""
    COMMAND = "command"
    """``WRONGTYPE``, an invalid or out-of-range argument: this key or call is bad, the tier is fine."""


_BY_CODE = {
    "BUSY": Fault.BUSY,
    "LOADING": Fault.BUSY,
    "TRYAGAIN": Fault.BUSY,
    "OOM": Fault.BUSY,
    "READONLY": Fault.TOPOLOGY,
    "MOVED": Fault.TOPOLOGY,
    "ASK": Fault.TOPOLOGY,
    "NOPERM": Fault.PERMISSION,
    "NOAUTH": Fault.PERMISSION,
    "WRONGPASS": Fault.PERMISSION,
    "CLUSTERDOWN": Fault.UNAVAILABLE,
    "MASTERDOWN": Fault.UNAVAILABLE,
}


@functools.cache
def errors() -> tuple[type[BaseException], ...]:
    """Everything a Redis call can raise that :func:`classify` handles; anything else is a bug and propagates."""
    import redis.exceptions as rx

    return (rx.RedisError, rx.RedisClusterException, OSError, asyncio.TimeoutError)


@functools.cache
def _by_class() -> tuple[tuple[type[BaseException], Fault], ...]:
    import redis.exceptions as rx  # imported on first use: ``import mw`` does not load redis-py

    # Order matters: redis-py derives AuthenticationError and BusyLoadingError from ConnectionError.
    return (
        (rx.AuthenticationError, Fault.PERMISSION),
        (rx.AuthorizationError, Fault.PERMISSION),
        (rx.NoPermissionError, Fault.PERMISSION),
        (rx.BusyLoadingError, Fault.BUSY),
        (rx.TryAgainError, Fault.BUSY),
        (rx.OutOfMemoryError, Fault.BUSY),
        (rx.ReadOnlyError, Fault.TOPOLOGY),
        (rx.AskError, Fault.TOPOLOGY),  # MovedError is an AskError
        (rx.ClusterDownError, Fault.UNAVAILABLE),
        (rx.SlotNotCoveredError, Fault.UNAVAILABLE),  # a slot whose node is gone
        (rx.ConnectionError, Fault.UNAVAILABLE),
        (rx.TimeoutError, Fault.UNAVAILABLE),
    )


_PIPELINE = "of pipeline caused error: "


def reply_text(exc: BaseException) -> str:
    """Redis's own error message, without the ``Command # n (...) of pipeline`` wrapper redis-py adds."""
    text = str(exc.args[0]) if exc.args else str(exc)
    cut = text.find(_PIPELINE)
    if cut >= 0:
        text = text[cut + len(_PIPELINE) :].lstrip("('\"").rstrip(",)'\"")
    return text


def _code(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    if isinstance(status, str) and status in _BY_CODE:
        return status
    first = reply_text(exc).split(" ", 1)[0]
    return first if first.isupper() else ""


def classify(exc: BaseException) -> Fault:
    """The kind of ``exc`` (one of :func:`errors`); an unknown error counts as the server being unavailable."""
    import redis.exceptions as rx

    for cls, fault in _by_class():
        if isinstance(exc, cls):
            return fault
    if isinstance(exc, (rx.CrossSlotTransactionError, rx.InvalidPipelineStack)):
        return Fault.COMMAND  # the runtime sent what a cluster cannot take: a bug, loud on writes
    if isinstance(exc, rx.RedisClusterException):  # not a RedisError: "cannot be connected", no node answered
        return Fault.UNAVAILABLE
    if isinstance(exc, rx.ResponseError):
        return _BY_CODE.get(_code(exc), Fault.COMMAND)
    if isinstance(exc, rx.DataError):  # redis-py refused an argument before sending it
        return Fault.COMMAND
    return Fault.UNAVAILABLE
