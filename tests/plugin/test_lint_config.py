"""mw-lint's ``--version``, its ``[tool.mw-lint]`` configuration and its summary on stdout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_nested import run

from pytest_mw.lint.cli import main

BAD = """\
def publish(mw, task_id, row):
    mw.set_global_item(f"task:by_id:{task_id}", row)
    mw.set_global_item("plain", row)
    mw.set_item("scratch", row, ttl_s=5)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text(BAD)
    (tmp_path / "src" / "legacy_app.py").write_text(BAD)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "tool.py").write_text(BAD)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _codes(out: str) -> list[str]:
    return [line.split(": ", 1)[1].split()[0] for line in out.splitlines() if ": MW" in line]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"mw-lint {metadata.version('pytest-mw')}\n"


def test_summary_goes_to_stdout_errors_to_stderr(project: Path) -> None:
    command = [sys.executable, "-m", "pytest_mw.lint.cli", "src/app.py"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False, env=env)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "Found 3 findings."
    assert result.stderr == ""


def test_pyproject_sets_paths_rules_and_exclusions(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.mw-lint]\npaths = ["src"]\nignore = ["MW002"]\nexclude = ["legacy_*"]\n'
    )
    assert main([]) == 1
    out = capsys.readouterr().out
    assert _codes(out) == ["MW001", "MW003"]
    assert all(line.startswith(f"src{os.sep}app.py:") for line in out.splitlines()[:-1]), out
    # The command line beats the file: a PATH replaces ``paths``, --select replaces ``select``, --ignore adds.
    assert main(["scripts", "--ignore", "MW003"]) == 1
    assert _codes(capsys.readouterr().out) == ["MW001"]
    assert main(["--select", "MW003"]) == 1
    assert _codes(capsys.readouterr().out) == ["MW003"]
    # From a subdirectory the same file is found; --isolated ignores it.
    os.chdir(project / "scripts")
    assert main(["."]) == 1
    assert _codes(capsys.readouterr().out) == ["MW001", "MW003"]
    assert main(["--isolated", "."]) == 1
    assert _codes(capsys.readouterr().out) == ["MW001", "MW002", "MW003"]


@pytest.mark.new_api
@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('ignore = ["MW999"]', "ignore: unknown rule 'MW999'"),
        ("paths = 3", "paths = 3: expected a list of strings"),
        ('disable = ["MW002"]', "has no key 'disable'"),
        ("select = [", "not valid TOML"),
    ],
)
def test_a_bad_table_is_a_usage_error_naming_file_and_key(
    project: Path, capsys: pytest.CaptureFixture[str], table: str, message: str
) -> None:
    from pytest_mw.lint.config import LintConfigError, load_config

    (project / "pyproject.toml").write_text(f"[tool.mw-lint]\n{table}\n")
    assert main(["src"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mw-lint: error: {project / 'pyproject.toml'}") and message in err, err
    with pytest.raises(LintConfigError, match=r"pyproject\.toml"):
        load_config(project / "pyproject.toml")


def test_explicit_config_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "lint.toml").write_text('[tool.mw-lint]\nselect = ["MW002"]\n')
    assert main(["--config", "lint.toml", "src/app.py"]) == 1
    assert _codes(capsys.readouterr().out) == ["MW002"]
    assert main(["--config", "nope.toml", "src"]) == 2
    assert "nope.toml: no such file" in capsys.readouterr().err


def test_the_pytest_option_applies_the_table(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.mw-lint]\nignore = ["MW002", "MW003"]\n')
    pytester.makepyfile(app=BAD)
    result = run(pytester, "--mw-lint", "app.py", "-m", "mw_lint")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*app.py:2:24: MW001*"])
