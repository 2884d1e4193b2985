"""``mw-lint PATH...``: the deployment checklist's code checks, with ruff/flake8-style output and exit codes.

Settings come from ``[tool.mw-lint]`` in the nearest ``pyproject.toml`` (:mod:`pytest_mw.lint.config`); the command
line beats them. Findings and the summary go to stdout (what a CI log or ``| tee`` keeps), errors to stderr.
Exit codes: 0 no findings, 1 findings, 2 usage error (bad option, unknown rule, missing path, bad configuration).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_mw.lint.checker import lint_paths
from pytest_mw.lint.config import LintConfig, LintConfigError, discover, load_config
from pytest_mw.lint.rules import RULES, expand

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    rules = "\n".join(f"  {rule.code}  {rule.summary}" for rule in RULES.values())
    parser = argparse.ArgumentParser(
        prog="mw-lint",
        description="Check Python sources for Mw key-construction mistakes (AST-based).",
        epilog=(
            f"rules:\n{rules}\n\nsuppress one finding with a reason: '# noqa: MW001 <why>' or "
            "'# mw-lint: ignore[MW001] <why>'.\nexit codes: 0 clean, 1 findings, 2 usage error."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="files or directories (default: [tool.mw-lint] paths, else .)"
    )
    parser.add_argument(
        "--select", default=None, help="comma-separated codes or prefixes to check (default: the config's, else all)"
    )
    parser.add_argument(
        "--ignore", default="", help="comma-separated codes or prefixes to skip (added to the config's ignore)"
    )
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB", help="file/dir names to skip (added to the config's)"
    )
    parser.add_argument(
        "--config", type=Path, default=None, metavar="PYPROJECT", help="read [tool.mw-lint] from this file"
    )
    parser.add_argument("--isolated", action="store_true", help="ignore every pyproject.toml")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    parser.add_argument("--exit-zero", action="store_true", help="exit 0 even when there are findings")
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    parser.add_argument("--list-rules", action="store_true", help="print the rules and exit")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def _version() -> str:
    """The installed distribution's version (the runtime's own when run from a source tree)."""
    from importlib import metadata

    try:
        return metadata.version("pytest-mw")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
        return "unknown"


def _config(args: argparse.Namespace) -> LintConfig:
    if args.isolated:
        return LintConfig()
    if args.config is not None:
        return load_config(args.config)
    return discover(Path.cwd())


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for a usage error
        return int(exc.code or 0)
    if args.list_rules:
        for rule in RULES.values():
            print(f"{rule.code}  {rule.name:<32} {rule.summary}")
        return EXIT_CLEAN
    try:
        config = _config(args)
        selected = set(RULES) if config.select is None else set(config.select)
        if args.select is not None:
            selected = expand(args.select)
        selected -= config.ignore | expand(args.ignore)
    except (LintConfigError, ValueError) as exc:
        print(f"mw-lint: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    paths = args.paths or list(config.paths) or ["."]
    try:
        findings = lint_paths(paths, selected, [*config.exclude, *args.exclude])
    except FileNotFoundError as exc:
        print(f"mw-lint: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "json":
        print(json.dumps([finding.as_dict() for finding in findings], indent=2))
    else:
        for finding in findings:
            print(finding)
        if findings and not args.quiet:
            print(f"Found {len(findings)} finding{'s' if len(findings) != 1 else ''}.")
    return EXIT_FINDINGS if findings and not args.exit_zero else EXIT_CLEAN


if __name__ == "__main__":
    sys.exit(main())
