"""``mw-lint``: the deployment checklist's code-quality items as an AST checker (``mw-lint PATH...``, ``--mw-lint``)."""

from pytest_mw.lint.checker import Finding, iter_python_files, lint_file, lint_paths, lint_source
from pytest_mw.lint.rules import RULES, Rule

__all__ = ["RULES", "Finding", "Rule", "iter_python_files", "lint_file", "lint_paths", "lint_source"]
