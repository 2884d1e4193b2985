"""Per-test automatic checks: strict key checks (``--mw-strict-keys``) and the double-prefix log check.

Both start in ``pytest_runtest_setup`` before any fixture, so keys touched and lines logged while fixtures prepare
data count too, and both report after the test body as a failure of the test itself (not a teardown error).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from pytest_mw.options import mw_options

if TYPE_CHECKING:
    from pytest_mw.recorder import KeyRecorder


class LogCheck(logging.Handler):
    """A root-logger handler keeping every record whose message contains a double-prefixed key.

    It sees what the root logger passes on at the levels configured for the run (``log_level``), like the checklist's
    grep over log files; set ``log_level = DEBUG`` to include DEBUG lines such as ``MISS ...``.
    """

    def __init__(self) -> None:
        from mw.keys import DOUBLE_PREFIX  # the grammar's own constant; loaded only for tests that check logs

        super().__init__(logging.NOTSET)
        self.double_prefix = DOUBLE_PREFIX
        self.records: list[logging.LogRecord] = []
        self._reported = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        if self.double_prefix in message:
            self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]

    def new_problem(self) -> str | None:
        """Records not reported yet, as a failure message."""
        fresh = self.records[self._reported :]
        self._reported = len(self.records)
        if not fresh:
            return None
        lines = "\n".join(f"  {r.levelname} {r.name} {r.pathname}:{r.lineno}: {r.getMessage()}" for r in fresh)
        return f"log records contain a double-prefixed key ({self.double_prefix!r}):\n{lines}"


@dataclass
class ItemChecks:
    """What runs for one test: the recorder and key checks, and the log check."""

    recorder: KeyRecorder | None = None
    strict: dict[str, Any] | None = None
    log_check: LogCheck | None = None
    _logger: logging.Logger = field(default_factory=logging.getLogger)

    def start(self) -> None:
        if self.recorder is not None:
            self.recorder.start()
        if self.log_check is not None:
            self._logger.addHandler(self.log_check)

    def stop(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()
        if self.log_check is not None:
            self._logger.removeHandler(self.log_check)

    def problems(self) -> list[str]:
        found: list[str] = []
        if self.recorder is not None and self.strict is not None:
            from pytest_mw.assertions import key_problems

            found += key_problems(self.recorder, **self.strict)
        if self.log_check is not None:
            problem = self.log_check.new_problem()
            if problem:
                found.append(problem)
        return found


CHECKS_KEY = pytest.StashKey[ItemChecks]()

_STRICT_KWARGS = frozenset({"double_prefix", "typed_only", "roundtrip", "allow"})


def _enabled(item: pytest.Item, marker_name: str, default: bool) -> tuple[bool, dict[str, Any]]:
    """A marker turns a check on (``@mark.x``) or off (``@mark.x(False)``) and may carry settings."""
    marker = item.get_closest_marker(marker_name)
    if marker is None:
        return default, {}
    enabled = bool(marker.args[0]) if marker.args else marker.kwargs.get("enabled", True)
    kwargs = {k: v for k, v in marker.kwargs.items() if k != "enabled"}
    return bool(enabled), kwargs


def strict_settings(item: pytest.Item) -> dict[str, Any] | None:
    """Keyword arguments for ``key_problems`` when strict keys apply to ``item``, else ``None``."""
    enabled, kwargs = _enabled(item, "mw_strict_keys", mw_options(item.config).strict_keys)
    unknown = set(kwargs) - _STRICT_KWARGS
    if unknown:
        pytest.fail(
            f"{item.nodeid}: mw_strict_keys got {', '.join(sorted(unknown))}; "
            f"accepted: enabled, {', '.join(sorted(_STRICT_KWARGS))}",
            pytrace=False,
        )
    if "allow" in kwargs:
        allow = kwargs["allow"]
        kwargs["allow"] = (allow,) if isinstance(allow, str) else tuple(allow)
    return kwargs if enabled else None


def setup_checks(item: pytest.Item) -> None:
    """Start what this test needs; nothing at all for tests that use neither the checks nor their fixtures."""
    names = getattr(item, "fixturenames", ())
    strict = strict_settings(item)
    logs, _ = _enabled(item, "mw_check_logs", mw_options(item.config).check_logs)
    logs = logs or "mw_log_check" in names
    if strict is None and not logs and "mw_keys" not in names:
        return
    checks = ItemChecks(strict=strict)
    if strict is not None or "mw_keys" in names:
        from pytest_mw.recorder import KeyRecorder

        checks.recorder = KeyRecorder()
    if logs:
        checks.log_check = LogCheck()
    item.stash[CHECKS_KEY] = checks
    checks.start()


def recorder_for(item: pytest.Item) -> KeyRecorder:
    checks = item.stash.get(CHECKS_KEY, None)
    if checks is None or checks.recorder is None:  # e.g. requested through getfixturevalue
        from pytest_mw.recorder import KeyRecorder

        checks = item.stash.setdefault(CHECKS_KEY, ItemChecks())
        checks.recorder = KeyRecorder().start()
    return checks.recorder


def log_check_for(item: pytest.Item) -> LogCheck:
    checks = item.stash.get(CHECKS_KEY, None)
    if checks is None or checks.log_check is None:
        checks = item.stash.setdefault(CHECKS_KEY, ItemChecks())
        checks.log_check = LogCheck()
        checks._logger.addHandler(checks.log_check)
    return checks.log_check


def call_problems(item: pytest.Item) -> list[str]:
    checks = item.stash.get(CHECKS_KEY, None)
    return [] if checks is None else checks.problems()


def teardown_checks(item: pytest.Item) -> list[str]:
    """Stop recording; return log problems that appeared during teardown."""
    checks = item.stash.get(CHECKS_KEY, None)
    if checks is None:
        return []
    del item.stash[CHECKS_KEY]
    checks.stop()
    if checks.log_check is None:
        return []
    problem = checks.log_check.new_problem()
    return [problem] if problem else []
