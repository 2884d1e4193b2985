"""The rules of ``mw-lint``: the deployment checklist's code-quality items, each with a code and a fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    summary: str
    """One line for ``--list-rules`` and the docs."""


RULES: dict[str, Rule] = {
    rule.code: rule
    for rule in (
        Rule("MW000", "syntax-error", "the file could not be parsed, so nothing in it was checked"),
        Rule(
            "MW001",
            "hand-built-global-key",
            "set_global_item() with a key built by hand (f-string, +, %, format, join, a literal with ':'); "
            "use set_global_item_typed(kind, scope, item_id, ...)",
        ),
        Rule(
            "MW002",
            "untyped-global-write",
            "set_global_item() is an untyped global write; the checklist wants set_global_item_typed() everywhere",
        ),
        Rule("MW003", "set-item-ttl", "set_item() is L0-only and takes no TTL (ttl=, ttl_s=, a third argument)"),
        Rule(
            "MW004",
            "handwritten-global-prefix",
            "a hand-written 'global:item:' string; keys come from the typed API (mw.keys builds them)",
        ),
        Rule(
            "MW005",
            "is-global-with-prefixed-literal",
            "is_global=True with a hand-written 'global:item:...' key; use get_item_typed(kind, scope, item_id)",
        ),
        Rule("MW006", "double-prefix-literal", "a string containing 'global:item:global:item:', a double-prefixed key"),
        Rule(
            "MW007",
            "inflight-sentinel",
            "set_inflight_sentinel() was not atomic; use try_set_inflight(key, ttl_s)",
        ),
        Rule(
            "MW100",
            "suppression-without-reason",
            "a '# noqa: MWxxx' or '# mw-lint: ignore[MWxxx]' comment without a reason suppresses nothing",
        ),
    )
}


def expand(selection: str) -> set[str]:
    """Codes named by a comma-separated selection; a prefix (``MW00``, ``MW``) selects every code it starts."""
    codes: set[str] = set()
    for part in (p.strip().upper() for p in selection.split(",")):
        if not part:
            continue
        matched = {code for code in RULES if code.startswith(part)}
        if not matched:
            raise ValueError(f"unknown rule {part!r}; known: {', '.join(RULES)}")
        codes |= matched
    return codes
