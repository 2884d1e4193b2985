"""Inline suppressions that must say why: ``# noqa: MW001 <reason>`` or ``# mw-lint: ignore[MW001] <reason>``.

A suppression without a reason suppresses nothing and is itself reported (MW100), so every exception to the
checklist is explained where it is made. A bare ``# noqa`` (no codes) does not silence mw-lint: it usually belongs to
another linter.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass

_CODE = r"[A-Za-z]+[0-9]+"
_NOQA = re.compile(rf"#\s*noqa\s*:\s*(?P<codes>{_CODE}(?:\s*,\s*{_CODE})*)(?P<reason>.*)", re.IGNORECASE)
_IGNORE = re.compile(r"#\s*mw-lint\s*:\s*ignore\s*\[(?P<codes>[^\]]*)\](?P<reason>.*)", re.IGNORECASE)
_REASON_LEAD = re.compile(r"^[\s\-:;,.()\u2013\u2014]+")


@dataclass(frozen=True)
class Suppression:
    line: int
    col: int
    codes: frozenset[str]
    reason: str

    @property
    def valid(self) -> bool:
        return any(ch.isalpha() for ch in self.reason)


def _reason(text: str) -> str:
    text = text.split("#", 1)[0]
    return _REASON_LEAD.sub("", text).strip()


def parse_comment(comment: str, line: int, col: int) -> Suppression | None:
    """The mw suppression in one comment, if it names at least one ``MW`` code."""
    match = _IGNORE.search(comment) or _NOQA.search(comment)
    if match is None:
        return None
    codes = frozenset(c.strip().upper() for c in match.group("codes").split(",") if c.strip())
    if not any(code.startswith("MW") for code in codes):
        return None
    return Suppression(line, col + 1, codes, _reason(match.group("reason")))


def suppressions(source: str) -> dict[int, list[Suppression]]:
    """Every mw suppression comment of a module, by line."""
    out: dict[int, list[Suppression]] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                found = parse_comment(token.string, token.start[0], token.start[1])
                if found is not None:
                    out.setdefault(found.line, []).append(found)
    except (tokenize.TokenError, SyntaxError):
        pass
    return out
