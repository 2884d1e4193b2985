"""``mw-lint PATH...``: the deployment checklist's code checks, with ruff/flake8-style output and exit codes.

Exit codes: 0 no findings, 1 findings, 2 usage error (bad option, unknown rule, missing path).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pytest_mw.lint.checker import lint_paths
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
    parser.add_argument("paths", nargs="*", default=["."], metavar="PATH", help="files or directories (default: .)")
    parser.add_argument("--select", default=None, help="comma-separated codes or prefixes to check (default: all)")
    parser.add_argument("--ignore", default="", help="comma-separated codes or prefixes to skip")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="file/dir names to skip")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    parser.add_argument("--exit-zero", action="store_true", help="exit 0 even when there are findings")
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    parser.add_argument("--list-rules", action="store_true", help="print the rules and exit")
    return parser


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
        selected = set(RULES) if args.select is None else expand(args.select)
        selected -= expand(args.ignore)
    except ValueError as exc:
        print(f"mw-lint: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        findings = lint_paths(args.paths, selected, args.exclude)
    except FileNotFoundError as exc:
        print(f"mw-lint: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "json":
        print(json.dumps([finding.as_dict() for finding in findings], indent=2))
    else:
        for finding in findings:
            print(finding)
        if findings and not args.quiet:
            print(f"Found {len(findings)} finding{'s' if len(findings) != 1 else ''}.", file=sys.stderr)
    return EXIT_FINDINGS if findings and not args.exit_zero else EXIT_CLEAN


if __name__ == "__main__":
    sys.exit(main())
