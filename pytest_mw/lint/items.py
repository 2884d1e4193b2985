"""``--mw-lint PATH``: one failing pytest item per mw-lint finding, one passing item per clean file.

The project's ``[tool.mw-lint]`` table (``select``, ``ignore``, ``exclude``; found from the rootdir) applies, as it
does to the ``mw-lint`` command. Items carry the ``mw_lint`` marker (``-m mw_lint`` runs only them,
``-m "not mw_lint"`` skips them) and report the finding as ``path:line:col: MW00x message`` with the offending
source line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_mw.lint.checker import Finding, iter_python_files, lint_file, read_source
from pytest_mw.lint.config import LintConfigError, discover
from pytest_mw.lint.rules import RULES


class MwLintError(Exception):
    """Raised by a lint item for its finding."""


class MwLintFile(pytest.File):
    """The lint findings of one Python file."""

    def __init__(self, *, select: frozenset[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.select = select

    def collect(self) -> Iterator[MwLintItem]:
        findings = lint_file(self.path, self.select)
        if not findings:
            yield MwLintItem.from_parent(self, name="mw-lint", finding=None)
            return
        for finding in findings:
            yield MwLintItem.from_parent(
                self, name=f"mw-lint[{finding.code}:{finding.line}:{finding.col}]", finding=finding
            )


class MwLintItem(pytest.Item):
    def __init__(self, *, finding: Finding | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.finding = finding
        self.add_marker("mw_lint")

    def runtest(self) -> None:
        if self.finding is not None:
            raise MwLintError(str(self.finding))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if not isinstance(excinfo.value, MwLintError) or self.finding is None:
            return str(super().repr_failure(excinfo))
        lines = read_source(self.path).splitlines()
        source = lines[self.finding.line - 1] if 0 < self.finding.line <= len(lines) else ""
        caret = " " * (self.finding.col - 1) + "^"
        return f"{self.finding}\n    {source}\n    {caret}"

    def reportinfo(self) -> tuple[Path, int, str]:
        if self.finding is None:
            return self.path, 0, "mw-lint"
        return (
            self.path,
            self.finding.line - 1,
            f"mw-lint {self.finding.code} at {self.finding.path}:{self.finding.line}",
        )


def lint_items(session: pytest.Session, paths: Iterable[str]) -> list[pytest.Item]:
    """Items for every Python file under ``paths``."""
    try:
        config = discover(Path(session.config.rootpath))
    except LintConfigError as exc:
        raise pytest.UsageError(f"--mw-lint / mw_lint: {exc}") from None
    select = frozenset((set(RULES) if config.select is None else config.select) - config.ignore)
    items: list[pytest.Item] = []
    for file in iter_python_files(paths, config.exclude):
        collector = MwLintFile.from_parent(session, path=file.resolve(), select=select)
        items.extend(collector.collect())
    return items
