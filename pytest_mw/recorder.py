"""Record every key the Mw tiers read, write and delete, with the user call site that caused it.

The recorder registers through :func:`mw.observe.add_observer`, the runtime's supported hook, so it sees exactly what
the tiers do (L0, L1, L2 and the internal ``negative``/``lease`` keys) without patching redis-py. Each event keeps the
first frames of the stack that are not Mw, pytest or the standard library: a failing key check can then say which line
of the test or of the code under test touched the key, and through which Mw method.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, NamedTuple

import pytest_mw

ITEM_TIERS = frozenset({"L0", "L1", "L2"})
"""Tiers that hold items; ``negative`` and ``lease`` events are internal keys the item checks ignore."""

STACK_DEPTH = 4
"""User frames kept per event: enough to see the test and the helper it called."""


def _package_dir(module_file: str | None) -> str:
    return os.path.dirname(os.path.abspath(module_file or "")) + os.sep


def _runtime_dir() -> str:
    import mw

    return _package_dir(mw.__file__)


_PLUGIN_DIR = _package_dir(pytest_mw.__file__)
_LIBRARY_DIRS = tuple(
    {
        os.path.abspath(path) + os.sep
        for name in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_paths().get(name))
    }
)


class Frame(NamedTuple):
    """One user frame of an event's stack."""

    filename: str
    lineno: int
    function: str

    def __str__(self) -> str:
        return f"{_shown_path(self.filename)}:{self.lineno} in {self.function}"


def _shown_path(filename: str) -> str:
    """Relative to the working directory when below it, as pytest shows paths."""
    try:
        relative = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if relative.startswith("..") else relative


@dataclass(frozen=True)
class KeyRecord:
    """One key event: ``op`` (read/write/delete), ``tier``, ``key``, the Mw entry point and the user stack."""

    op: str
    tier: str
    key: str
    api: str | None = None
    """The outermost Mw call on the stack, e.g. ``MwManager.set_global_item``: how user code reached the tier."""
    stack: tuple[Frame, ...] = ()
    """User frames, innermost first (empty for events from Mw's own threads)."""
    thread: str = ""

    @property
    def site(self) -> str:
        """Where user code caused this event, for failure messages."""
        where = f"thread {self.thread}" if self.thread else "unknown call site"
        if self.stack:
            where = str(self.stack[0])
        return f"{where} (via {self.api})" if self.api else where

    def describe(self, *, full_stack: bool = False) -> str:
        line = f"{self.op:<6} {self.tier:<8} {self.key}  at {self.site}"
        if full_stack and len(self.stack) > 1:
            line += "".join(f"\n           called from {frame}" for frame in self.stack[1:])
        return line


_PYTEST_DIR = os.sep + "_pytest" + os.sep
_PLUGGY_DIR = os.sep + "pluggy" + os.sep


def _stack(frame: FrameType | None, runtime_dir: str) -> tuple[str | None, tuple[Frame, ...]]:
    """The Mw entry point and the user frames above it, walking from the observer outwards to pytest's frames."""
    entry: FrameType | None = None
    user: list[Frame] = []
    fallback: Frame | None = None
    while frame is not None and len(user) < STACK_DEPTH:
        code = frame.f_code
        filename = code.co_filename
        if filename.startswith(runtime_dir):
            if not user:
                entry = frame
        elif _PYTEST_DIR in filename or _PLUGGY_DIR in filename:
            break  # pytest called the test: the user's part of the stack ends here
        elif filename.startswith(_PLUGIN_DIR):
            pass
        elif filename.startswith(_LIBRARY_DIRS) or filename.startswith("<"):
            if fallback is None and not user:
                fallback = Frame(filename, frame.f_lineno, code.co_name)
        else:
            user.append(Frame(filename, frame.f_lineno, code.co_name))
        frame = frame.f_back
    if not user and fallback is not None:
        user.append(fallback)
    return (None if entry is None else _api_name(entry)), tuple(user)


def _api_name(frame: FrameType) -> str:
    """``MwManager.set_global_item``: the class of the object user code called, whichever base defines the method."""
    owner = frame.f_locals.get("self")
    name = frame.f_code.co_name
    return f"{type(owner).__name__}.{name}" if owner is not None else getattr(frame.f_code, "co_qualname", name)


class KeyRecorder:
    """Collects :class:`KeyRecord` events while started (use as a context manager or ``start()``/``stop()``).

    ``capture_stack=False`` skips the stack walk, for recording in hot loops where call sites do not matter.
    """

    def __init__(self, *, capture_stack: bool = True) -> None:
        self.capture_stack = capture_stack
        self.events: list[KeyRecord] = []
        self._remove: Callable[[], None] | None = None
        self._runtime_dir = _runtime_dir()

    # --- lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> KeyRecorder:
        if self._remove is None:
            from mw.observe import add_observer

            self._remove = add_observer(self._observe)
        return self

    def stop(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None

    @property
    def recording(self) -> bool:
        return self._remove is not None

    def __enter__(self) -> KeyRecorder:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _observe(self, event: Any) -> None:
        api: str | None = None
        stack: tuple[Frame, ...] = ()
        if self.capture_stack:
            api, stack = _stack(sys._getframe(1), self._runtime_dir)
        self.events.append(KeyRecord(event.op, event.tier, event.key, api, stack, threading.current_thread().name))

    # --- queries -------------------------------------------------------------------------------------------------
    def clear(self) -> None:
        """Forget what was recorded so far (e.g. after test setup)."""
        self.events.clear()

    def select(self, op: str | Iterable[str] | None = None, tier: str | Iterable[str] | None = None) -> list[KeyRecord]:
        """Events with that op and tier (each a name or several; ``None`` for any)."""
        ops = None if op is None else ({op} if isinstance(op, str) else set(op))
        tiers = None if tier is None else ({tier} if isinstance(tier, str) else set(tier))
        return [e for e in self.events if (ops is None or e.op in ops) and (tiers is None or e.tier in tiers)]

    def keys(self, op: str | Iterable[str] | None = None, tier: str | Iterable[str] | None = None) -> list[str]:
        """Distinct keys of :meth:`select`, in first-seen order."""
        return list(dict.fromkeys(e.key for e in self.select(op, tier)))

    @property
    def written(self) -> list[str]:
        return self.keys("write", ITEM_TIERS)

    @property
    def read(self) -> list[str]:
        return self.keys("read", ITEM_TIERS)

    @property
    def deleted(self) -> list[str]:
        return self.keys("delete", ITEM_TIERS)

    def __iter__(self) -> Iterator[KeyRecord]:
        return iter(list(self.events))

    def __len__(self) -> int:
        return len(self.events)

    def __repr__(self) -> str:
        return f"<KeyRecorder {len(self.events)} events, {'recording' if self.recording else 'stopped'}>"


def group_by_key(events: Iterable[KeyRecord]) -> dict[str, list[KeyRecord]]:
    out: dict[str, list[KeyRecord]] = {}
    for event in events:
        out.setdefault(event.key, []).append(event)
    return out
