"""The server layer (``pytest_mw.servers``) stands on its own: it never imports the plugin's modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest_mw

PLUGIN_MODULES = {"pytest_mw.options", "pytest_mw.plugin", "pytest_mw.fixtures", "pytest_mw.checks"}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_server_layer_never_imports_the_plugin() -> None:
    servers = Path(pytest_mw.__file__).parent / "servers"
    found = {
        f"{path.name}: {name}"
        for path in sorted(servers.glob("*.py"))
        for name in imported(path)
        if name in PLUGIN_MODULES or name in {f"pytest_mw.{m.rsplit('.', 1)[1]}" for m in PLUGIN_MODULES}
    }
    assert not found, f"the server layer imports the plugin: {sorted(found)}"


def test_the_check_sees_an_import_of_the_options(tmp_path: Path) -> None:
    module = tmp_path / "factories.py"
    module.write_text("from pytest_mw.options import server_options\nfrom pytest_mw import plugin\n")
    assert {"pytest_mw.options", "pytest_mw.plugin"} <= imported(module)
