"""Typed exceptions. Each names the bad value so the caller can fix the input, not guess."""

from __future__ import annotations

from mw.secrets import masked


class MwError(Exception):
    """Base of every error this runtime raises on purpose."""


class ConfigError(MwError, ValueError):
    """An environment variable or setting has a value the runtime cannot use."""

    def __init__(self, variable: str, value: object, reason: str) -> None:
        self.variable = variable
        self.value = masked(value)  # a bad MW_REDIS_URL must not carry its password into a traceback or a log
        self.reason = reason
        super().__init__(f"{variable}={self.value!r}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:  # keep the type across processes (Ray, multiprocessing)
        return (type(self), (self.variable, self.value, self.reason))


class KeyGrammarError(MwError, ValueError):
    """A key component breaks the key grammar (empty, wrong type, ':' or control characters, too long)."""

    def __init__(self, part: str, value: object, reason: str) -> None:
        self.part = part
        self.value = value
        self.reason = reason
        super().__init__(f"bad key {part} {value!r}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.part, self.value, self.reason))


class CodecError(MwError, ValueError):
    """A value cannot be encoded, or stored bytes are not a valid envelope."""


class ValueTooLargeError(CodecError):
    """An encoded value is larger than the configured maximum."""

    def __init__(self, key: str, size: int, limit: int) -> None:
        self.key = key
        self.size = size
        self.limit = limit
        super().__init__(f"value for {key!r} is {size} bytes encoded, over the limit of {limit} (MW_MAX_VALUE_BYTES)")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.key, self.size, self.limit))


class TaskRowError(MwError, ValueError):
    """A task row cannot be cached: no id, or a field the cache cannot interpret (``field`` names it)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.field))


class TierUnavailable(MwError):
    """A shared tier (L2) could not serve this call; the caller falls through to the next tier.

    Raised for connection refused/reset/timeout and for a server that is loading or busy; the
    subclasses say which, so a caller that can retry knows it may.
    """


class TierBusy(TierUnavailable):
    """The server answered but cannot serve now (``LOADING``, ``BUSY``, ``TRYAGAIN``): retry later."""


class TopologyChanged(TierUnavailable):
    """The server is no longer the one to ask (``READONLY`` after a failover, ``MOVED``/``ASK``)."""


class ReplicationUnconfirmed(TierUnavailable):
    """L2's primary took a change, but fewer replicas than ``MW_REDIS_WAIT_REPLICAS`` confirmed it in time: a failover
    now could lose it, so it counts as a change that may not have landed (its invalidation is replayed)."""


class TierPermissionError(TierUnavailable):
    """The server refused the command (``NOPERM``, ``NOAUTH``): a configuration error, not an outage."""


class L2CommandError(MwError, ValueError):
    """Redis refused one command on one key (``WRONGTYPE``, an out-of-range argument).

    The key is corrupt or the call invalid; the tier itself is up and is never marked down for it.
    """


class LoadTimeout(MwError, TimeoutError):
    """A read-through call did not get its value within ``MW_LOAD_TIMEOUT_S``."""

    def __init__(self, key: str, timeout_s: float) -> None:
        self.key = key
        self.timeout_s = timeout_s
        super().__init__(f"no value for {key!r} within {timeout_s:g}s (MW_LOAD_TIMEOUT_S)")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.key, self.timeout_s))


class MltUnavailable(MwError):
    """The long-term store did not answer within ``MW_MLT_TIMEOUT_S``, or its connection failed.

    ``in_doubt``: a write's statement had reached the store when the call failed, so it may still have been applied
    (a stopped server runs what it received when it resumes; a crash may come after the commit). A writer then
    treats both outcomes as possible: it invalidates the cached copies and learns the result from the store later.
    False when nothing was sent (no connection, a refused one).
    """

    def __init__(self, message: str, *, in_doubt: bool = False) -> None:
        super().__init__(message)
        self.in_doubt = in_doubt

    def __reduce__(self) -> tuple[object, ...]:
        return (_mlt_unavailable, (str(self), self.in_doubt))


def _mlt_unavailable(message: str, in_doubt: bool) -> MltUnavailable:
    return MltUnavailable(message, in_doubt=in_doubt)
