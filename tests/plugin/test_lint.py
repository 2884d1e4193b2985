"""mw-lint: each rule on source snippets, suppressions, the CLI's output and exit codes, and --mw-lint in pytest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from plugin_nested import run

from pytest_mw.lint import RULES, lint_paths, lint_source
from pytest_mw.lint.cli import main


def codes(source: str) -> list[tuple[int, str]]:
    return [(f.line, f.code) for f in lint_source(textwrap.dedent(source))]


def test_hand_built_global_keys() -> None:
    assert codes(
        """
        def f(mw, x, row, parts):
            mw.set_global_item(f"task:{x}", row)
            mw.set_global_item("task:" + x, row)
            mw.set_global_item("task:%s" % x, row)
            mw.set_global_item("task:{}".format(x), row)
            mw.set_global_item(":".join(parts), row)
            mw.set_global_item("task:by_id:1", row)
            mw.set_global_item(item_id=f"t:{x}", value=row)
            key = f"task:{x}"
            mw.set_global_item(key, row)
            mw.set_global_item(x, row)
            set_global_item(x, row)
            mw.set_global_item_typed("task", "by_id", x, row)
        """
    ) == [(3, "MW001"), (4, "MW001"), (5, "MW001"), (6, "MW001"), (7, "MW001"), (8, "MW001"), (9, "MW001"),
          (11, "MW001"), (12, "MW002"), (13, "MW002")]  # fmt: skip


def test_a_name_rebound_to_a_plain_value_is_no_longer_hand_built() -> None:
    found = lint_source("def f(mw, x, row):\n    key = f'a:{x}'\n    key = x\n    mw.set_global_item(key, row)\n")
    assert [(f.line, f.code) for f in found] == [(4, "MW002")]
    message = lint_source("def f(mw, x):\n    k = 'a:' + x\n    mw.set_global_item(k, 1)\n")[0].message
    assert "string concatenation (assigned to 'k' on line 2)" in message


def test_set_item_takes_no_ttl() -> None:
    assert codes(
        """
        mw.set_item("a", 1, ttl=30)
        mw.set_item("a", 1, ttl_s=30)
        mw.set_item("a", 1, ex=30)
        mw.set_item("a", 1, 30)
        mw.set_item("a", 1)
        mw.set_item(*args)
        """
    ) == [(2, "MW003"), (3, "MW003"), (4, "MW003"), (5, "MW003")]


def test_prefix_literals_double_prefix_and_is_global() -> None:
    assert codes(
        '''
        """Docstrings may mention global:item:x."""
        PREFIX = "global:item:"
        key = f"global:item:{kind}:{x}"
        raw = b"global:item:x"
        mw.get_item("global:item:task:1", is_global=True)
        mw.get_item(f"global:item:task:{x}", is_global=True)
        mw.del_global_key("global:item:global:item:x")
        mw.get_item(x, is_global=True)
        mw.set_inflight_sentinel("k", 30)
        # a comment about global:item: is not code
        '''
    ) == [(3, "MW004"), (4, "MW004"), (5, "MW004"), (6, "MW005"), (7, "MW005"), (8, "MW006"), (10, "MW007")]


def test_suppressions_need_a_reason() -> None:
    found = lint_source(
        textwrap.dedent(
            """
            mw.set_global_item(f"a:{x}", 1)  # noqa: MW001 v1 agents still read this key
            mw.set_global_item(f"b:{x}", 1)  # mw-lint: ignore[MW001] because of the v1 readers
            mw.set_global_item(f"c:{x}", 1)  # noqa: MW001
            mw.set_global_item(f"d:{x}", 1)  # mw-lint: ignore[MW001]
            mw.set_global_item(f"e:{x}", 1)  # noqa
            mw.set_global_item(f"f:{x}", 1)  # noqa: E501, MW002 wrong code, so MW001 stays
            mw.set_global_item(
                f"g:{x}", 1
            )  # noqa: MW001 the end line of a finding counts too
            """
        )
    )
    assert [(f.line, f.code) for f in found] == [
        (4, "MW001"),
        (4, "MW100"),
        (5, "MW001"),
        (5, "MW100"),
        (6, "MW001"),
        (7, "MW001"),
    ]


def test_syntax_errors_are_findings() -> None:
    [finding] = lint_source("def f(:\n", "broken.py")
    assert finding.code == "MW000" and finding.path == "broken.py" and "SyntaxError" in finding.message


def test_every_rule_is_documented() -> None:
    text = (Path(__file__).parents[2] / "docs" / "plugin.md").read_text()
    for code in RULES:
        assert code in text, f"{code} is not in docs/plugin.md"


BAD = """\
def publish(mw, task_id, row):
    mw.set_global_item(f"task:by_id:{task_id}", row)
    mw.set_item("scratch", row, ttl_s=5)
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "bad.py").write_text(BAD)
    (tmp_path / "pkg" / "good.py").write_text("def f(mw, x):\n    mw.set_global_item_typed('task', 'by_id', x, 1)\n")
    (tmp_path / "pkg" / ".venv").mkdir()
    (tmp_path / "pkg" / ".venv" / "ignored.py").write_text(BAD)
    (tmp_path / "pkg" / "__pycache__").mkdir()
    return tmp_path


def test_cli_output_and_exit_codes(tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.chdir(tree)
    assert main(["pkg"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"pkg{os.sep}bad.py:2:24: MW001 set_global_item() writes a key built by hand (an f-string); "
        "use set_global_item_typed(kind, scope, item_id, value)",
        f"pkg{os.sep}bad.py:3:5: MW003 set_item() is L0-only and takes no TTL (ttl_s=); "
        "use set_global_item_typed(..., ttl_s=...) for a value that expires",
        "Found 2 findings.",
    ]
    assert err == ""
    assert main(["pkg/good.py"]) == 0
    assert main(["--select", "MW003", "-q", "pkg"]) == 1
    assert capsys.readouterr()[0].count("MW003") == 1
    assert main(["--ignore", "MW00", "pkg"]) == 0
    assert main(["--exit-zero", "pkg"]) == 0
    capsys.readouterr()
    assert main(["--format", "json", "pkg"]) == 1
    assert [f["code"] for f in json.loads(capsys.readouterr()[0])] == ["MW001", "MW003"]
    assert main(["missing"]) == 2
    assert "mw-lint: error: missing: no such file or directory" in capsys.readouterr()[1]
    assert main(["--select", "XX1", "pkg"]) == 2
    assert main(["--no-such-option"]) == 2
    assert main(["--list-rules"]) == 0
    assert "MW005" in capsys.readouterr()[0]
    assert main(["--exclude", "bad.py", "pkg"]) == 0


def test_console_script_runs(tree: Path) -> None:
    script = Path(sys.executable).with_name("mw-lint")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "pytest_mw.lint.cli"]
    result = subprocess.run([*command, "pkg"], cwd=tree, capture_output=True, text=True, check=False)
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith(f"pkg{os.sep}bad.py:2:24: MW001 ")


def test_lint_paths_api(tree: Path) -> None:
    assert {f.code for f in lint_paths([tree / "pkg"])} == {"MW001", "MW003"}
    with pytest.raises(FileNotFoundError):
        lint_paths([tree / "nope"])


def test_mw_lint_option_reports_each_finding_as_a_failure(pytester: pytest.Pytester) -> None:
    pytester.mkpydir("src")
    pytester.path.joinpath("src", "bad.py").write_text(BAD)
    pytester.path.joinpath("src", "good.py").write_text("X = 1\n")
    pytester.makepyfile(test_nested_ok="def test_ok(): pass")
    result = run(pytester, "--mw-lint", "src", "-v", "test_nested_ok.py")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*src/__init__.py::mw-lint PASSED*",
            "*src/bad.py::mw-lint?MW001:2:24? FAILED*",
            "*src/bad.py::mw-lint?MW003:3:5? FAILED*",
            "*src/good.py::mw-lint PASSED*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ mw-lint MW001 at src/bad.py:2 _*",
            "src/bad.py:2:24: MW001 set_global_item() writes a key built by hand (an f-string)*",
            '        mw.set_global_item(f"task:by_id:{task_id}", row)',
            "                           ^",
        ]
    )
    run(pytester, "--mw-lint", "src", "-m", "not mw_lint", "test_nested_ok.py").assert_outcomes(passed=1)
    run(pytester, "--mw-lint", "src", "-k", "MW003", "test_nested_ok.py").assert_outcomes(failed=1)


def test_mw_lint_ini_and_missing_path(pytester: pytest.Pytester) -> None:
    pytester.mkpydir("src")
    pytester.path.joinpath("src", "bad.py").write_text(BAD)
    pytester.makepyfile(test_nested_ok="def test_ok(): pass")
    pytester.makeini("[pytest]\nmw_lint = src\n")
    run(pytester, "test_nested_ok.py").assert_outcomes(passed=2, failed=2)
    result = run(pytester, "--mw-lint", "nowhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mw-lint / mw_lint: *nowhere: no such file or directory"])
