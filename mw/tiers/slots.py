"""Redis Cluster hash tags: every Redis key of one item (value, negative marker, lease) lands in one slot.

The tag is added where logical keys become Redis keys (``RedisTier.phys``), never in the key grammar, so
``global:item:...`` stays what users, the linter and the telemetry see. A logical key ``K`` becomes
``{K}``, and its markers ``mw:neg:{K}`` and ``mw:lease:{K}``: Redis hashes the text from the first ``{`` to the
first ``}`` after it, which starts at the same brace and runs through the same characters of ``K`` in all three
(a ``}`` inside ``K`` ends the tag early, at the same place in each). The namespace in front may hold no brace
(``MwConfig`` refuses one on a cluster), so the first ``{`` is always this one. ``MGET [value, marker, lease]``,
the lease scripts and a write with its clears are then single-slot; reads of several items are grouped by slot.
"""

from __future__ import annotations

from collections.abc import Sequence

from mw import keys as K

__all__ = ["by_slot", "hash_slot", "tagged", "untagged"]

_MARKERS = (K.NEGATIVE_PREFIX, K.LEASE_PREFIX)


def tagged(key: str) -> str:
    """The cluster form of a logical key: the item's key in braces, after its marker if it is one."""
    for marker in _MARKERS:
        if key.startswith(marker):
            return f"{marker}{{{key[len(marker) :]}}}"
    return f"{{{key}}}"


def untagged(text: str) -> str:
    """The inverse of :func:`tagged` (a text not of that form is returned as it is)."""
    for marker in ("", *_MARKERS):
        if text.startswith(marker + "{") and text.endswith("}"):
            return marker + text[len(marker) + 1 : -1]
    return text


def hash_slot(phys_key: str) -> int:
    """The cluster slot of a Redis key (CRC16 of its hash tag, modulo 16384), as the server computes it."""
    from redis.crc import key_slot

    return int(key_slot(phys_key.encode()))


def by_slot(phys_keys: Sequence[str]) -> dict[int, list[int]]:
    """The positions of ``phys_keys`` grouped by slot, in first-seen order (one group per round trip)."""
    groups: dict[int, list[int]] = {}
    for index, key in enumerate(phys_keys):
        groups.setdefault(hash_slot(key), []).append(index)
    return groups
