"""The AST pass behind ``mw-lint``: finds the checklist's key-construction mistakes in Python source.

Working on the syntax tree rather than with grep means a key built in one statement and written in the next is still
recognised, docstrings and comments do not count as keys, and each finding has an exact line and column.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from pytest_mw.lint.rules import RULES
from pytest_mw.lint.suppress import Suppression, suppressions


def _prefixes() -> tuple[str, str]:
    """The grammar's global prefix and its doubled form, from :mod:`mw.keys` (loaded when a file is linted, so
    importing the plugin or the CLI stays free of the runtime)."""
    from mw.keys import DOUBLE_PREFIX, GLOBAL_PREFIX

    return GLOBAL_PREFIX, DOUBLE_PREFIX


UNTYPED_GLOBAL_WRITES = frozenset({"set_global_item"})
KEY_ARG_CALLS = frozenset(
    {
        "get_item",
        "get_item_async",
        "set_global_item",
        "del_global_key",
        "del_global_key_sync",
        "del_global_key_async",
    }
)
"""Calls whose first argument (or ``item_id=``/``key=``) is an item id or a full global key."""
SET_ITEM_CALLS = frozenset({"set_item"})
TTL_KEYWORDS = frozenset({"ex", "px", "expire", "expires", "expire_at", "expiry", "timeout"})

DEFAULT_EXCLUDE = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".tox",
        ".nox",
        ".venv",
        "venv",
        "__pycache__",
        "node_modules",
        "build",
        "dist",
        "site-packages",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".eggs",
    }
)


@dataclass(frozen=True, order=True)
class Finding:
    """One problem at ``path:line:col`` (1-based column, as ruff and flake8 print it)."""

    path: str
    line: int
    col: int
    code: str
    message: str
    end_line: int = 0

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "line": self.line, "col": self.col, "code": self.code, "message": self.message}


def _call_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _key_arg(call: ast.Call) -> ast.expr | None:
    if call.args and not isinstance(call.args[0], ast.Starred):
        return call.args[0]
    for keyword in call.keywords:
        if keyword.arg in ("item_id", "key"):
            return keyword.value
    return None


def _is_str(node: ast.AST) -> TypeGuard[ast.Constant]:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _literal_text(node: ast.AST) -> str | None:
    """The text a str literal or f-string starts with (an f-string's leading literal part)."""
    if _is_str(node):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) for v in node.values if _is_str(v))
    return None


def _leading_text(node: ast.AST) -> str | None:
    if _is_str(node):
        return str(node.value)
    first = node.values[0] if isinstance(node, ast.JoinedStr) and node.values else None
    if first is not None and _is_str(first):
        return str(first.value)
    return None


class _Checker(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.findings: list[Finding] = []
        self._reported: set[int] = set()
        self._scopes: list[dict[str, tuple[str, int]]] = [{}]
        self.prefix, self.double = _prefixes()

    # --- reporting -----------------------------------------------------------------------------------------------
    def report(self, node: ast.AST, code: str, message: str, span: ast.AST | None = None) -> None:
        """A finding at ``node``; a suppression on its first line or on the last line of ``span`` (the statement or
        call it sits in) applies."""
        line = getattr(node, "lineno", 1)
        end = getattr(span if span is not None else node, "end_lineno", None) or line
        self.findings.append(Finding(self.path, line, getattr(node, "col_offset", 0) + 1, code, message, end))

    def _mark(self, node: ast.AST) -> None:
        for child in ast.walk(node):
            self._reported.add(id(child))

    # --- what "built by hand" means ------------------------------------------------------------------------------
    def handbuilt(self, node: ast.AST) -> str | None:
        """How an expression builds a string key by hand, or ``None`` if it does not (visibly)."""
        if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in node.values):
            return "an f-string"
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Add) and any(
                _is_str(side) or isinstance(side, ast.JoinedStr) or self.handbuilt(side)
                for side in (node.left, node.right)
            ):
                return "string concatenation"
            if isinstance(node.op, ast.Mod) and _is_str(node.left):
                return "%-formatting"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_str(node.func.value):
            if node.func.attr == "format":
                return "str.format()"
            if node.func.attr == "join":
                return "str.join()"
        if _is_str(node) and ":" in str(node.value):
            return f"the hand-written key {node.value!r}"
        if isinstance(node, ast.Name):
            for scope in reversed(self._scopes):
                if node.id in scope:
                    how, line = scope[node.id]
                    return f"{how} (assigned to {node.id!r} on line {line})"
        return None

    # --- scopes: remember names bound to hand-built strings --------------------------------------------------------
    def _scoped(self, node: ast.AST) -> None:
        self._scopes.append({})
        self.generic_visit(node)
        self._scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _scoped

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        how = self.handbuilt(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name):
                if how is None:
                    self._scopes[-1].pop(target.id, None)
                else:
                    self._scopes[-1][target.id] = (how, node.lineno)
            else:
                self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            if isinstance(node.target, ast.Name):
                how = self.handbuilt(node.value)
                if how is None:
                    self._scopes[-1].pop(node.target.id, None)
                else:
                    self._scopes[-1][node.target.id] = (how, node.lineno)

    # --- docstrings and bare strings are documentation, not keys -------------------------------------------------
    def visit_Expr(self, node: ast.Expr) -> None:
        if _is_str(node.value):
            return
        self.generic_visit(node)

    # --- calls ---------------------------------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node)
        if name in UNTYPED_GLOBAL_WRITES:
            self._untyped_write(node, name)
        elif name in SET_ITEM_CALLS:
            self._set_item(node, name)
        elif name == "set_inflight_sentinel":
            self.report(node, "MW007", "set_inflight_sentinel() is not atomic; use try_set_inflight(key, ttl_s)")
        if name in KEY_ARG_CALLS:
            self._is_global_literal(node, name)
        self.generic_visit(node)

    def _untyped_write(self, node: ast.Call, name: str) -> None:
        arg = _key_arg(node)
        how = None if arg is None else self.handbuilt(arg)
        if how is not None and arg is not None:
            self.report(
                arg,
                "MW001",
                f"{name}() writes a key built by hand ({how}); use set_global_item_typed(kind, scope, item_id, value)",
                span=node,
            )
            text = _literal_text(arg)
            if text is not None and self.prefix in text and self.double not in text:
                self._mark(arg)
        else:
            self.report(
                node,
                "MW002",
                f"{name}() is an untyped global write; use set_global_item_typed(kind, scope, item_id, value)",
            )

    def _set_item(self, node: ast.Call, name: str) -> None:
        ttl_keywords = [
            k.arg for k in node.keywords if k.arg is not None and ("ttl" in k.arg.lower() or k.arg in TTL_KEYWORDS)
        ]
        if ttl_keywords:
            self.report(
                node,
                "MW003",
                f"{name}() is L0-only and takes no TTL ({', '.join(k + '=' for k in ttl_keywords)}); "
                "use set_global_item_typed(..., ttl_s=...) for a value that expires",
            )
        elif len(node.args) > 2 and not any(isinstance(a, ast.Starred) for a in node.args):
            self.report(
                node,
                "MW003",
                f"{name}() is L0-only and takes (item_id, value); a third argument reads like a TTL it cannot take",
            )

    def _is_global_literal(self, node: ast.Call, name: str) -> None:
        is_global = next((k.value for k in node.keywords if k.arg == "is_global"), None)
        if not (isinstance(is_global, ast.Constant) and is_global.value is True):
            return
        arg = _key_arg(node)
        text = None if arg is None else _leading_text(arg)
        if arg is None or text is None or not text.startswith(self.prefix) or self.double in text:
            return
        self.report(
            arg,
            "MW005",
            f"{name}(..., is_global=True) with a hand-written prefixed key; "
            "use get_item_typed(kind, scope, item_id) (or pass a key from mw.keys)",
            span=node,
        )
        self._mark(arg)

    # --- string literals -----------------------------------------------------------------------------------------
    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        self._literal(node, _literal_text(node) or "")
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                self.visit(value)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            self._literal(node, node.value)
        elif isinstance(node.value, bytes):
            self._literal(node, node.value.decode("latin-1"))

    def _literal(self, node: ast.AST, text: str) -> None:
        if id(node) in self._reported:
            return
        if self.double in text:
            self.report(node, "MW006", f"string contains the double-prefixed {self.double!r}")
        elif self.prefix in text:
            self.report(
                node, "MW004", f"hand-written {self.prefix!r} key; use the *_typed API (keys are built by mw.keys)"
            )


def _suppressed(finding: Finding, by_line: dict[int, list[Suppression]]) -> bool:
    for line in {finding.line, finding.end_line}:
        for suppression in by_line.get(line, ()):
            if finding.code in suppression.codes and suppression.valid:
                return True
    return False


def lint_source(source: str, path: str = "<string>", select: Iterable[str] | None = None) -> list[Finding]:
    """Findings for one module's source, suppressions applied, sorted by position."""
    selected = set(RULES) if select is None else set(select)
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        found = [Finding(path, exc.lineno or 1, (exc.offset or 0) or 1, "MW000", f"SyntaxError: {exc.msg}")]
        return [f for f in found if f.code in selected]
    checker = _Checker(path)
    checker.visit(tree)
    by_line = suppressions(source)
    findings = [f for f in checker.findings if f.code in selected and not _suppressed(f, by_line)]
    if "MW100" in selected:
        for line_suppressions in by_line.values():
            for s in line_suppressions:
                if not s.valid:
                    codes = ", ".join(sorted(s.codes))
                    findings.append(
                        Finding(path, s.line, s.col, "MW100", f"suppression of {codes} needs a reason after the codes")
                    )
    return sorted(set(findings))


def read_source(path: Path) -> str:
    """Read a module as Python does (honours the coding cookie)."""
    with open(path, "rb") as handle:
        import tokenize

        encoding, _ = tokenize.detect_encoding(handle.readline)
    return path.read_text(encoding=encoding)


def iter_python_files(paths: Iterable[str | os.PathLike[str]], exclude: Iterable[str] = ()) -> Iterator[Path]:
    """Python files under ``paths``: files as given, directories recursively minus excluded names and dot-dirs."""
    import fnmatch

    excluded = set(DEFAULT_EXCLUDE) | set(exclude)

    def skip(name: str) -> bool:
        return name.startswith(".") or any(fnmatch.fnmatch(name, pattern) for pattern in excluded)

    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not skip(d))
                for name in sorted(files):
                    candidate = Path(root) / name
                    if name.endswith(".py") and not skip(name) and candidate not in seen:
                        seen.add(candidate)
                        yield candidate
        elif path not in seen:
            seen.add(path)
            yield path


def display_path(path: Path) -> str:
    """Relative to the working directory when below it, else as given."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


def lint_file(path: Path, select: Iterable[str] | None = None) -> list[Finding]:
    return lint_source(read_source(path), display_path(path), select)


def lint_paths(
    paths: Iterable[str | os.PathLike[str]], select: Iterable[str] | None = None, exclude: Iterable[str] = ()
) -> list[Finding]:
    """Every finding under ``paths`` (missing paths raise ``FileNotFoundError``)."""
    paths = list(paths)
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file or directory")
    selected = None if select is None else list(select)
    return [finding for file in iter_python_files(paths, exclude) for finding in lint_file(file, selected)]
