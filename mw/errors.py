"""Typed exceptions. Each names the bad value so the caller can fix the input, not guess."""

from __future__ import annotations


class MwError(Exception):
    """Base of every error this runtime raises on purpose."""


class ConfigError(MwError, ValueError):
    """An environment variable or setting has a value the runtime cannot use."""

    def __init__(self, variable: str, value: object, reason: str) -> None:
        self.variable = variable
        self.value = value
        self.reason = reason
        super().__init__(f"{variable}={value!r}: {reason}")

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
    """A task row cannot be cached: no id, or a field the cache cannot interpret."""
