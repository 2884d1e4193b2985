"""The cache tiers: L0 (per agent), L1 (per node), L2 (cluster-wide Redis)."""

from __future__ import annotations

from typing import Any


class _Miss:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"


MISS: Any = _Miss()
"""What a tier lookup returns when it has no entry (``None`` is a cacheable value)."""
