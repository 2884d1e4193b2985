"""Assertions for code that uses Mw: key consistency, TTLs and telemetry, as the deployment checklist asks.

The plugin registers this module with ``pytest.register_assert_rewrite`` before anything imports it, so a failing
helper shows pytest's comparison detail (dict diffs, ``approx`` tables) under its own message. Import the helpers from
here or from ``pytest_mw``.

Key checks read a :class:`~pytest_mw.recorder.KeyRecorder` (the ``mw_keys`` fixture) and name every offending key with
the line of user code that touched it and the Mw method it went through.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mw import keys as K
from pytest_mw.recorder import ITEM_TIERS, KeyRecord, KeyRecorder

if TYPE_CHECKING:
    from mw import MwManager

GLOBAL_PREFIX = K.GLOBAL_PREFIX
DOUBLE_PREFIX = K.DOUBLE_PREFIX
TIERS = ("L2", "L1", "L0")
"""Default tiers of the TTL assertions; ``envelope`` (the L2 value's logical expiry) can be asked for too."""

Events = KeyRecorder | Iterable[KeyRecord]

__all__ = [
    "assert_hit_ratio",
    "assert_key_roundtrip",
    "assert_memory_metrics",
    "assert_no_double_prefix",
    "assert_task_ttl",
    "assert_telemetry",
    "assert_tier_hits",
    "assert_tiers_ordered",
    "assert_ttl",
    "assert_typed_keys_only",
    "key_problems",
    "ttl_remaining",
]


# --- key consistency -------------------------------------------------------------------------------------------------
def _events(source: Events) -> list[KeyRecord]:
    return list(source.events if isinstance(source, KeyRecorder) else source)


_display = K.display_name


def _summarise(events: Iterable[KeyRecord], *, full_stack: bool = True) -> str:
    """One line per (op, key, call site) with the tiers merged: a write-through shows once, not three times."""
    merged: dict[tuple[str, str, str], tuple[list[str], KeyRecord]] = {}
    for event in events:
        slot = merged.setdefault((event.op, event.key, event.site), ([], event))
        if event.tier not in slot[0]:
            slot[0].append(event.tier)
    lines = []
    for (op, key, _), (tiers, event) in merged.items():
        line = f"  {op:<6} {','.join(tiers):<9} {key}\n      at {event.site}"
        if full_stack:
            line += "".join(f"\n         called from {frame}" for frame in event.stack[1:])
        lines.append(line)
    return "\n".join(lines)


class _Check:
    """A key check's result: the offending entries (compared against ``[]`` for pytest's diff) and the message."""

    def __init__(self, offending: list[str], message: str | None) -> None:
        self.offending = offending
        self.message = message


def _double_prefix(events: list[KeyRecord]) -> _Check:
    bad = [e for e in events if DOUBLE_PREFIX in e.key]
    if not bad:
        return _Check([], None)
    keys = list(dict.fromkeys(e.key for e in bad))
    return _Check(keys, f"double-prefixed keys ({DOUBLE_PREFIX!r}) were touched:\n{_summarise(bad)}")


def _typed_only(events: list[KeyRecord], allow: Sequence[str]) -> _Check:
    bad = []
    for event in events:
        if event.op != "write" or event.tier not in ITEM_TIERS or not event.key.startswith(K.GLOBAL_ROOT):
            continue
        if any(fnmatch.fnmatchcase(event.key, pattern) for pattern in allow):
            continue
        through_untyped = (event.api or "").endswith("set_global_item")
        if K.parse_typed(event.key) is None or through_untyped:
            bad.append(event)
    if not bad:
        return _Check([], None)
    return _Check(
        list(dict.fromkeys(e.key for e in bad)),
        f"global writes outside the typed grammar {K.TEMPLATES['global_typed']} "
        "(an untyped key, or a write through set_global_item()):\n"
        f"{_summarise(bad)}\n"
        "  use set_global_item_typed(kind, scope, item_id, value); allow legacy keys with allow=[glob, ...]",
    )


WRITE_APIS = frozenset(
    {"set_global_item", "set_global_item_typed", "set_item", "set_organ_item_typed", "cache_task_row", "cache_task"}
)


def _write_side(event: KeyRecord) -> bool:
    """A delete a write makes to drop stale copies elsewhere: part of the write, not a delete of the item."""
    return event.op == "delete" and (event.api or "").rsplit(".", 1)[-1] in WRITE_APIS


def _same_item(a: str, b: str) -> bool:
    """Two global keys address one item under different spellings.

    Either one display name ends the other at a ``:`` (``42`` and ``task:by_id:42``), or a ``kind:id`` spelling
    names the kind and the id of a typed key while dropping its scope (``task:42`` and ``task:by_id:42``).
    """
    if a == b:
        return False
    da, db = _display(a), _display(b)
    if da.endswith(":" + db) or db.endswith(":" + da):
        return True
    short, long = sorted((da.split(":"), db.split(":")), key=len)
    return len(short) == 2 and len(long) >= 3 and short[0] == long[0] and short[-1] == long[-1]


def _cached_at_end(events: list[KeyRecord], key: str) -> bool:
    """The recording ends with ``key`` written, not deleted: L2's last word, else any item tier's."""
    mine = [e for e in events if e.key == key and e.op in ("write", "delete")]
    shared = [e for e in mine if e.tier == "L2"] or mine
    return bool(shared) and shared[-1].op == "write"


def _roundtrip_auto(events: list[KeyRecord]) -> _Check:
    items = [e for e in events if e.tier in ITEM_TIERS and e.key.startswith(GLOBAL_PREFIX)]
    written = sorted({e.key for e in items if e.op == "write"})
    first_write: dict[str, int] = {}
    for at, event in enumerate(items):
        if event.op == "write":
            first_write.setdefault(event.key, at)
    pairs: dict[tuple[str, str], list[KeyRecord]] = {}
    for at, event in enumerate(items):
        if event.op == "write" or event.key in written or _write_side(event):
            continue
        twins = [w for w in written if _same_item(w, event.key)]
        if event.op == "delete":
            # A delete under another spelling is a bug when it leaves the written copy behind: the item stays cached.
            twins = [w for w in twins if first_write[w] < at and _cached_at_end(items, w)]
        if twins:
            pairs.setdefault((twins[0], event.key), []).append(event)
    if not pairs:
        return _Check([], None)
    offending = [f"{key} (written as {twin})" for twin, key in pairs]
    blocks = []
    for (twin, _), others in pairs.items():
        writes = [e for e in items if e.key == twin and e.op == "write"]
        kept = "\n      (still cached under the written key)" if any(e.op == "delete" for e in others) else ""
        blocks.append(f"{_summarise(writes)}\n{_summarise(others)}{kept}")
    return _Check(
        offending,
        "an item was written under one key but read or deleted under another "
        "(the origin system's task-cache bug):\n" + "\n".join(blocks),
    )


def _roundtrip_item(
    events: list[KeyRecord], item: str, ops: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, list[str]], str]:
    """What each op touched for ``item``, what it should have touched, and the detail for the message."""
    wanted = _display(item)
    family = K.ORGAN_PREFIX if item.startswith(K.ORGAN_PREFIX) else GLOBAL_PREFIX
    wanted_id = wanted.rsplit(":", 1)[-1]

    def matches(key: str) -> bool:
        if key == item:
            return True
        if not key.startswith(family):
            return False
        shown = _display(key)
        return shown == wanted or shown.rsplit(":", 1)[-1] == wanted_id

    touched = [e for e in events if e.tier in ITEM_TIERS and e.op in ops and matches(e.key) and not _write_side(e)]
    actual = {op: list(dict.fromkeys(e.key for e in touched if e.op == op)) for op in ops}
    if item.startswith(GLOBAL_PREFIX):
        key = item
    else:
        written = actual.get("write") or [e.key for e in touched]
        key = written[0] if written else GLOBAL_PREFIX + item
    expected = {op: [key] for op in ops}
    detail = _summarise(touched) if touched else "  (no key event matched)"
    return actual, expected, detail


def key_problems(
    source: Events,
    *,
    double_prefix: bool = True,
    typed_only: bool = True,
    roundtrip: bool = True,
    allow: Sequence[str] = (),
) -> list[str]:
    """What ``--mw-strict-keys`` checks, as messages (empty when clean)."""
    events = _events(source)
    checks = [
        _double_prefix(events) if double_prefix else None,
        _typed_only(events, allow) if typed_only else None,
        _roundtrip_auto(events) if roundtrip else None,
    ]
    return [check.message for check in checks if check is not None and check.message]


def assert_no_double_prefix(source: Events) -> None:
    """No key touched during the recording contains ``global:item:global:item:``."""
    __tracebackhide__ = True  # a failure points at the test, not at this helper
    check = _double_prefix(_events(source))
    assert check.offending == [], check.message


def assert_typed_keys_only(source: Events, *, allow: Sequence[str] = ()) -> None:
    """Every global write used the typed grammar ``global:item:{kind}:{scope}:{id}``.

    What counts as a violation: a write at L0/L1/L2 of a ``global:`` key that does not parse as ``{kind}:{scope}:{id}``
    (e.g. ``set_global_item("user42")`` or a read-through fill of ``get_item(id, loader=...)``), and any write that
    entered Mw through ``set_global_item()``, even when the id happens to look typed (``"task:by_id:42"``). Keys
    matching a glob in ``allow`` are accepted. Negative markers and leases are internal and not checked.
    """
    __tracebackhide__ = True  # a failure points at the test, not at this helper
    check = _typed_only(_events(source), allow)
    assert check.offending == [], check.message


def assert_key_roundtrip(
    source: Events, item: str | None = None, *, ops: Sequence[str] = ("write", "read", "delete")
) -> None:
    """Write, read and delete of an item touched one and the same key.

    With ``item`` (a full key such as ``mw.keys.task_key(42)``, or its display form ``"task:by_id:42"``): each op in
    ``ops`` touched exactly one key, the same for all (the full key, when one was given). Every global key ending in
    the same id (``global:item:42``, ``global:item:task:42``) counts as a spelling of the item, so a mismatch shows.

    Without ``item`` (the check ``--mw-strict-keys`` runs): no global key was read under a different spelling of a
    key that was written (``global:item:42`` against ``global:item:task:by_id:42``), and no delete of a key never
    written left a written spelling of the same item cached (deleted as ``global:item:task:42``). Deletes a write
    makes to drop stale copies elsewhere belong to the write.
    """
    __tracebackhide__ = True  # a failure points at the test, not at this helper
    events = _events(source)
    if item is None:
        check = _roundtrip_auto(events)
        assert check.offending == [], check.message
        return
    actual, expected, detail = _roundtrip_item(events, item, ops)
    assert actual == expected, f"write/read/delete of {item!r} did not all touch one key:\n{detail}"


# --- TTLs ------------------------------------------------------------------------------------------------------------
def _key(key: str | tuple[str, str, str]) -> str:
    return K.global_typed_key(*key) if isinstance(key, tuple) else key


def ttl_remaining(manager: MwManager, key: str | tuple[str, str, str], tiers: Sequence[str] = TIERS) -> dict[str, Any]:
    """Seconds left per tier: ``None`` when the key is absent there, ``math.inf`` when it never expires.

    ``L2`` is Redis's own PTTL (a real Redis counts it on its wall clock, the embedded fakeredis on the manager's);
    ``L1``/``L0`` and ``envelope`` (the expiry stored inside the L2 value) are measured against ``manager.clock()``,
    the clock the runtime decides expiry with. Reading does not touch the recorder or telemetry.
    """
    key = _key(key)
    now = manager.clock()
    out: dict[str, Any] = {}
    for tier in tiers:
        if tier == "L2":
            pttl = manager.l2.pttl(key)
            out[tier] = None if pttl == -2 else math.inf if pttl == -1 else pttl / 1000
        elif tier == "L1":
            at = manager.l1.expire_at(key)
            out[tier] = None if at is None else at - now
        elif tier == "L0":
            at = manager.l0.expire_at(key)
            out[tier] = (math.inf if key in manager.l0 else None) if at is None else at - now
        elif tier == "envelope":
            data = manager.l2.client.get(manager.l2.phys(key))
            if data is None:
                out[tier] = None
            else:
                _, at = manager.cluster.codec.decode(data)
                out[tier] = math.inf if at is None else at - now
        else:
            raise ValueError(f"unknown tier {tier!r}; choose from L2, L1, L0, envelope")
    return out


def _bounds(manager: MwManager, tiers: Sequence[str], low: float, high: float) -> dict[str, tuple[float, float]]:
    """Accepted seconds left per tier. L1's copy may be younger than the item (filled later by a read), so L1 is
    held to its contract only: present, and never longer than the item or ``MW_L1_TTL_S``."""
    return {tier: (0.0, min(high, manager.l1.ttl_s)) if tier == "L1" else (low, high) for tier in tiers}


def _outside(
    remaining: Mapping[str, Any], bounds: Mapping[str, tuple[float, float]], tolerance: float
) -> dict[str, Any]:
    return {
        tier: left
        for tier, left in remaining.items()
        if left is None or not (bounds[tier][0] - tolerance <= left <= bounds[tier][1] + tolerance and left > 0)
    }


def _table(remaining: Mapping[str, Any], bounds: Mapping[str, tuple[float, float]], bad: Mapping[str, Any]) -> str:
    def shown(left: Any) -> str:
        return "absent" if left is None else "no expiry" if left == math.inf else f"{left:g}s"

    return "\n".join(
        f"  {tier:<8} {shown(left):>12}   expected {lo:g}..{hi:g}s{'   <-- outside' if tier in bad else ''}"
        for tier, left in remaining.items()
        for lo, hi in [bounds[tier]]
    )


def assert_ttl(
    manager: MwManager,
    key: str | tuple[str, str, str],
    expected_s: float,
    tolerance: float = 1.0,
    *,
    tiers: Sequence[str] = TIERS,
) -> dict[str, Any]:
    """The key's remaining TTL is ``expected_s`` (± ``tolerance``) in each of ``tiers``; returns what was measured.

    ``key`` is a full key or ``(kind, scope, item_id)``. L1 must hold a copy that outlives neither the item nor
    ``MW_L1_TTL_S``. With ``mw_clock`` advanced, L0/L1/envelope follow it; a real Redis's PTTL (``L2``) does not
    (pass ``tiers`` accordingly), the embedded fakeredis's does.
    """
    __tracebackhide__ = True  # a failure points at the test, not at this helper
    key = _key(key)
    remaining = ttl_remaining(manager, key, tiers)
    bounds = _bounds(manager, tiers, expected_s, expected_s)
    outside = _outside(remaining, bounds, tolerance)
    assert outside == {}, (
        f"TTL of {key!r} is not {expected_s:g}s (tolerance {tolerance:g}s):\n{_table(remaining, bounds, outside)}"
    )
    return remaining


def assert_task_ttl(
    manager: MwManager,
    row: Mapping[str, Any],
    tolerance: float = 1.0,
    *,
    tiers: Sequence[str] = TIERS,
) -> dict[str, Any]:
    """The cached row's TTL matches the status table (``MW_TASK_TTL_{STATUS}_S``, bounded by lease/run_after).

    The runtime shortens task TTLs by up to ``MW_TTL_JITTER`` (never lengthens them), so the accepted range is
    ``[ttl * (1 - jitter), ttl]`` (never below 1 s) ± ``tolerance``; set ``ttl_jitter=0`` for an exact TTL. A status
    whose TTL is 0 must not be cached at all.
    """
    __tracebackhide__ = True  # a failure points at the test, not at this helper
    from mw.tasks import MIN_TASK_TTL_S, row_task_id, task_ttl_s

    key = K.task_key(row_task_id(row))
    ttl = task_ttl_s(row, manager.config, manager.clock())
    remaining = ttl_remaining(manager, key, tiers)
    status = row.get("status")
    if ttl == 0:
        present = {tier: left for tier, left in remaining.items() if left is not None}
        assert present == {}, f"task {row.get('id')!r} in status {status!r} has TTL 0 and must not be cached"
        return remaining
    low = max(MIN_TASK_TTL_S, ttl * (1 - manager.config.ttl_jitter))
    bounds = _bounds(manager, tiers, low, ttl)
    outside = _outside(remaining, bounds, tolerance)
    assert outside == {}, (
        f"task {row.get('id')!r} in status {status!r}: the status table gives {ttl:g}s (jitter "
        f"{manager.config.ttl_jitter:g}, tolerance {tolerance:g}s):\n{_table(remaining, bounds, outside)}"
    )
    return remaining


# --- telemetry -------------------------------------------------------------------------------------------------------
def _metrics_dict(source: Any) -> dict[str, Any]:
    if isinstance(source, (str, bytes)):
        source = json.loads(source)
    if isinstance(source, Mapping) and isinstance(source.get("memory_metrics"), Mapping):
        source = source["memory_metrics"]
    if not isinstance(source, Mapping):
        raise TypeError(f"expected a heartbeat or its memory_metrics dict, got {type(source).__name__}")
    return dict(source)


def _counters(source: Any) -> dict[str, Any]:
    """Counters without the ``mw_`` prefix from a manager, ``get_telemetry()`` or a heartbeat."""
    if hasattr(source, "get_telemetry"):
        return dict(source.get_telemetry())
    metrics = _metrics_dict(source)
    out = {name[3:] if name.startswith("mw_") else name: value for name, value in metrics.items()}
    if "hits" not in out and {"l0_hits", "l1_hits", "l2_hits"} <= out.keys():
        out["hits"] = out["l0_hits"] + out["l1_hits"] + out["l2_hits"]
    return out


def assert_hit_ratio(source: Any, at_least: float, *, min_lookups: int = 1) -> float:
    """hits / (hits + misses) is at least ``at_least`` (the checklist wants > 0.7); returns the ratio.

    ``source``: a manager, its ``get_telemetry()`` dict, or a heartbeat / ``memory_metrics`` dict. ``min_lookups``
    guards against passing on an empty cache (a ratio of 0 lookups is meaningless).
    """
    __tracebackhide__ = True  # a failure points at the test, not at this helper
    counters = _counters(source)
    hits, misses = counters.get("hits"), counters.get("misses")
    if hits is not None and misses is not None:
        assert hits + misses >= min_lookups, f"only {hits + misses} lookups counted; need {min_lookups} to judge"
        ratio = hits / (hits + misses) if hits + misses else 0.0
    else:
        ratio = float(counters["hit_ratio"])
    tiers = {name: counters.get(name) for name in ("l0_hits", "l1_hits", "l2_hits", "misses")}
    assert ratio >= at_least, f"hit ratio {ratio:.3f} is below {at_least} ({tiers})"
    return ratio


def assert_telemetry(source: Any, **expected: int) -> None:
    """Exact counter values, e.g. ``assert_telemetry(mw, l0_hits=2, misses=1, task_evictions=1)``."""
    __tracebackhide__ = True  # a failure points at the test, not at this helper
    counters = _counters(source)
    unknown = sorted(set(expected) - counters.keys())
    if unknown:
        raise KeyError(f"no such counters: {', '.join(unknown)}; known: {', '.join(sorted(counters))}")
    actual = {name: counters[name] for name in expected}
    assert actual == expected, "telemetry counters differ"


def assert_tier_hits(
    source: Any, *, l0: int | None = None, l1: int | None = None, l2: int | None = None, misses: int | None = None
) -> None:
    """Exact hits per tier (and misses); tiers left as ``None`` are not checked."""
    __tracebackhide__ = True  # a failure points at the test, not at this helper
    names = {"l0_hits": l0, "l1_hits": l1, "l2_hits": l2, "misses": misses}
    assert_telemetry(source, **{name: value for name, value in names.items() if value is not None})


def assert_tiers_ordered(source: Any) -> None:
    """L0 hits >= L1 hits >= L2 hits, the shape the checklist expects of a healthy deployment."""
    __tracebackhide__ = True  # a failure points at the test, not at this helper
    c = _counters(source)
    hits = {"l0_hits": c["l0_hits"], "l1_hits": c["l1_hits"], "l2_hits": c["l2_hits"]}
    assert c["l0_hits"] >= c["l1_hits"] >= c["l2_hits"], f"tier hits are not ordered L0 >= L1 >= L2: {hits}"


def _type_problem(name: str, value: Any, expected: type) -> str | None:
    if isinstance(value, bool):
        return f"{name} is a bool ({value!r}), expected {expected.__name__}"
    if expected is float:
        if not isinstance(value, (int, float)):
            return f"{name} is {type(value).__name__} ({value!r}), expected float"
        if not math.isfinite(value) or not 0 <= value <= 1:
            return f"{name} = {value!r} is not a ratio in [0, 1]"
        return None
    if expected is int:
        if not isinstance(value, int):
            return f"{name} is {type(value).__name__} ({value!r}), expected int"
        return None if value >= 0 else f"{name} = {value!r} is negative"
    if expected is list:
        if not isinstance(value, list):
            return f"{name} is {type(value).__name__}, expected a list of [item, count]"
        for entry in value:
            if (
                not isinstance(entry, (list, tuple))
                or len(entry) != 2
                or not isinstance(entry[0], str)
                or isinstance(entry[1], bool)
                or not isinstance(entry[1], int)
            ):
                return f"{name} entry {entry!r} is not [item: str, count: int]"
        return None
    return None if isinstance(value, expected) else f"{name} is {type(value).__name__}, expected {expected.__name__}"


def assert_memory_metrics(heartbeat: Any) -> dict[str, Any]:
    """Every ``mw_*`` field of the checklist is present with the right type; returns the ``memory_metrics`` dict.

    ``heartbeat``: the ``memory_metrics`` dict itself, a heartbeat ``{"memory_metrics": {...}}``, or either as JSON.
    Required (``mw.telemetry.METRIC_FIELDS``): ``mw_hit_ratio`` (float in [0, 1]), the ``int`` counters
    ``mw_l0_hits``, ``mw_l1_hits``, ``mw_l2_hits``, ``mw_task_cache_hits``, ``mw_task_cache_misses``,
    ``mw_task_evictions``, ``mw_negative_cache_hits`` (never bools, never negative), and ``mw_hot_items``, a list of
    ``[item, count]``. Extra fields are allowed.
    """
    __tracebackhide__ = True  # a failure points at the test, not at this helper
    from mw.telemetry import METRIC_FIELDS

    metrics = _metrics_dict(heartbeat)
    problems = [f"{name} is missing" for name in METRIC_FIELDS if name not in metrics]
    problems += [
        problem
        for name, expected in METRIC_FIELDS.items()
        if name in metrics and (problem := _type_problem(name, metrics[name], expected))
    ]
    listed = "".join(f"\n  - {problem}" for problem in problems)
    assert problems == [], f"heartbeat memory_metrics do not have the checklist's shape:{listed}"
    return metrics
