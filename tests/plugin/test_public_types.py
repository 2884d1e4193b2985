"""The package's public names keep their real types: a downstream ``mypy --strict`` sees a misuse."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_mw

PACKAGE_ROOT = Path(pytest_mw.__file__).resolve().parents[1]


def test_every_lazy_name_is_exported_and_typed() -> None:
    """``__all__``, the lazy table and the ``TYPE_CHECKING`` imports name the same things, from the same modules."""
    tree = ast.parse(Path(pytest_mw.__file__).read_text(encoding="utf-8"))
    typed: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module is not None
                typed.update({alias.name: stmt.module for alias in stmt.names})
    assert typed == pytest_mw._LAZY
    assert set(pytest_mw.__all__) == set(typed)
    for name in pytest_mw.__all__:
        assert getattr(pytest_mw, name) is not None


def _mypy(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    target = tmp_path / "downstream_use.py"
    target.write_text(code, encoding="utf-8")
    env = dict(os.environ)
    if PACKAGE_ROOT.name not in ("site-packages", "dist-packages"):  # a checkout; an installed wheel is found as is
        env["MYPYPATH"] = str(PACKAGE_ROOT)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            os.devnull,
            "--follow-imports",
            "silent",
            str(target),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )


def test_mypy_strict_reports_a_misused_assert_ttl(tmp_path: Path) -> None:
    result = _mypy(
        tmp_path,
        "from typing import Any\n"
        "from pytest_mw import assert_ttl\n\n\n"
        "def check(m: Any) -> None:\n"
        '    assert_ttl(m, ("a", "b"), "ten")\n',
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'Argument 2 to "assert_ttl" has incompatible type "tuple[str, str]"' in result.stdout, result.stdout
    assert 'Argument 3 to "assert_ttl" has incompatible type "str"; expected "float"' in result.stdout, result.stdout


@pytest.mark.guard("a correct call type-checks (under Any it did too): the typed names must not reject it")
def test_mypy_strict_accepts_a_correct_call(tmp_path: Path) -> None:
    result = _mypy(
        tmp_path,
        "from typing import Any\n"
        "from pytest_mw import KeyRecorder, assert_key_roundtrip, assert_ttl\n\n\n"
        "def check(m: Any, keys: KeyRecorder) -> None:\n"
        '    assert_ttl(m, ("a", "b", "c"), 10.0)\n'
        '    assert_key_roundtrip(keys, "task:by_id:1")\n',
    )
    assert result.returncode == 0, result.stdout + result.stderr
