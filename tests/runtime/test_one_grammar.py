"""Nothing outside ``mw/keys.py`` builds or matches keys by its own copy of the grammar, and ``simulations`` uses no
private name of the runtime: a key literal or f-string starting with a grammar prefix is a restated grammar."""

from __future__ import annotations

import ast
from pathlib import Path

from mw import keys as K

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mw", "pytest_mw", "simulations")
PREFIXES = K.RESERVED_PREFIXES


def _sources() -> list[Path]:
    return [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py")) if p != ROOT / "mw" / "keys.py"]


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            found |= {id(s.value) for s in body if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)}
    return found


def _leading_text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def test_no_key_literal_outside_the_grammar_module() -> None:
    restated = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            text = _leading_text(node)
            if text is None or id(node) in docs:
                continue
            prefix = next((p for p in PREFIXES if text.startswith(p)), None)
            if prefix is not None and not text[len(prefix) : len(prefix) + 1].isspace():  # "mw: ..." is prose
                restated.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text!r}")
    assert restated == [], "the key grammar is restated outside mw/keys.py"


def test_simulations_import_no_private_name_of_another_package() -> None:
    private = []
    for path in sorted((ROOT / "simulations").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [a.name for a in node.names if a.name.startswith("_")]
                if names:
                    private.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import {names}")
    assert private == [], "simulations imports a private name"
