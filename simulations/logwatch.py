"""The logs of a run, as the checklist greps them: every INFO+ line of the runtime and of the application.

Lines go to an optional file (``grep -r "global:item:global:item" logs/`` works on it as on a deployment's logs) and
are scanned as they are written for double-prefixed keys. The runtime's per-lookup ``MISS`` lines stay at DEBUG and
are not enabled: they would cost more than the lookups. Warnings still reach the root logger's handlers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

from mw.keys import DOUBLE_PREFIX
from simulations.measure import MAX_EXAMPLES, DoublePrefix

WATCHED = ("mw", "app")
MAX_FILE_LINES = 200_000


class LogWatch(logging.Handler):
    def __init__(self, findings: DoublePrefix, path: Path | None = None) -> None:
        super().__init__(logging.INFO)
        self.findings = findings
        self.lines = 0
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w", encoding="utf-8")
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self._saved: list[tuple[logging.Logger, int, bool]] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self.lines += 1
        if DOUBLE_PREFIX in line:
            self.findings.log_lines += 1
            if len(self.findings.log_examples) < MAX_EXAMPLES:
                self.findings.log_examples.append(line[:300])
        if self._file is not None and self.lines <= MAX_FILE_LINES:
            self._file.write(line + "\n")
        if record.levelno >= logging.WARNING:
            logging.getLogger().handle(record)

    def __enter__(self) -> LogWatch:
        for name in WATCHED:
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.level, logger.propagate))
            logger.setLevel(logging.INFO)
            logger.propagate = False  # INFO lines stay here; warnings are passed on to the root logger
            logger.addHandler(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for logger, level, propagate in self._saved:
            logger.removeHandler(self)
            logger.setLevel(level)
            logger.propagate = propagate
        self._saved.clear()
        if self._file is not None:
            self._file.close()
            self._file = None
