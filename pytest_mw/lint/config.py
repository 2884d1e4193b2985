"""``[tool.mw-lint]`` in ``pyproject.toml``: a project's paths, rules and exclusions, so every run agrees.

Looked for in the working directory and its parents (the first ``pyproject.toml`` with the table wins, as ruff finds
its settings), or given with ``--config``. Keys::

    [tool.mw-lint]
    paths = ["src", "tests"]   # what to check when no PATH is given (relative to the pyproject.toml)
    select = ["MW0"]           # codes or prefixes (default: all)
    ignore = ["MW002"]         # codes or prefixes never reported
    exclude = ["legacy_*"]     # file/dir name globs skipped, beside the built-in ones

A value of the wrong type, an unknown key or rule is a :class:`LintConfigError` naming the file and the key.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_mw.lint.rules import expand

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TABLE = "mw-lint"
KEYS = ("paths", "select", "ignore", "exclude")


class LintConfigError(ValueError):
    """A ``[tool.mw-lint]`` table mw-lint cannot use; the message names the file and the key."""


@dataclass(frozen=True)
class LintConfig:
    """The settings of one project; ``source`` is the file they came from (``None``: built-in defaults)."""

    source: Path | None = None
    paths: tuple[str, ...] = ()
    select: frozenset[str] | None = None
    ignore: frozenset[str] = field(default_factory=frozenset)
    exclude: tuple[str, ...] = ()


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` at or above ``start`` that has a ``[tool.mw-lint]`` table."""
    start = start.resolve()
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            tool = _read(candidate).get("tool", {})
            if isinstance(tool, Mapping) and TABLE in tool:
                return candidate
    return None


def _read(path: Path) -> dict[str, object]:
    try:
        with open(path, "rb") as handle:
            data: dict[str, object] = tomllib.load(handle)
            return data
    except tomllib.TOMLDecodeError as exc:
        raise LintConfigError(f"{path}: not valid TOML: {exc}") from None


def _strings(path: Path, key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LintConfigError(f"{path}: [tool.{TABLE}] {key} = {value!r}: expected a list of strings")
    return tuple(v.strip() for v in value)


def _codes(path: Path, key: str, value: object) -> frozenset[str]:
    try:
        return frozenset(expand(",".join(_strings(path, key, value))))
    except ValueError as exc:
        raise LintConfigError(f"{path}: [tool.{TABLE}] {key}: {exc}") from None


def load_config(path: Path) -> LintConfig:
    """The ``[tool.mw-lint]`` table of ``path`` (an empty table, or none: the defaults, from that file)."""
    if not path.is_file():
        raise LintConfigError(f"{path}: no such file")
    tool = _read(path).get("tool", {})
    table = tool.get(TABLE, {}) if isinstance(tool, Mapping) else {}
    if not isinstance(table, Mapping):
        raise LintConfigError(f"{path}: [tool.{TABLE}] must be a table")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise LintConfigError(f"{path}: [tool.{TABLE}] has no key {unknown[0]!r} (known: {', '.join(KEYS)})")
    root = path.parent
    paths = tuple(str(root / p) for p in _strings(path, "paths", table.get("paths", [])))
    select = _codes(path, "select", table["select"]) if "select" in table else None
    return LintConfig(
        source=path,
        paths=paths,
        select=select,
        ignore=_codes(path, "ignore", table.get("ignore", [])),
        exclude=_strings(path, "exclude", table.get("exclude", [])),
    )


def discover(start: Path) -> LintConfig:
    """The project's settings as seen from ``start``, or the defaults when no ``pyproject.toml`` has the table."""
    found = find_pyproject(start)
    return LintConfig() if found is None else load_config(found)
