"""Bad input never escapes as the wrong exception, and is refused before anything is spent (issue 9, item 6).

* a key part UTF-8 cannot encode (a lone surrogate) -> ``KeyGrammarError`` naming the part, raised before
  an invalidation sequence number is taken, a bus message sent, an L2 command run or any tier touched;
* a value nested deeper than the codec's ``MAX_DEPTH`` (100) or containing itself -> ``CodecError``, on
  write and on decode (a too-deep cached entry is a counted miss);
* an out-of-range number in a task row -> ``TaskRowError`` naming the field;
* an out-of-range TTL -> ``ConfigError`` (a ``ValueError``) naming the value, never reaching Redis.

"Nothing spent" is proven from outside: the fault seam (every L2 and Mlt call boundary) and the key
observers (every L0/L1/L2 read, write and delete) record nothing from the calling thread; generation,
telemetry, hot items, L0/L1 sizes, L2 contents, pending invalidations and Mlt statements are unchanged;
and a raw subscriber on the bus sees the next message carry the very next sequence number.

The limits are spelled as literals here (100 levels, 10 years): they are the documented contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mw import CodecError, ConfigError, KeyGrammarError, MwConfig, MwManager, TaskRowError, observe
from mw import keys as K
from mw.codec import HEADER_SIZE, Codec, dumps_json, loads_json
from mw.invalidation import INV_CHANNEL
from mw.tasks import to_epoch

try:
    from mw import faults
except ImportError:  # the seam is newer than the base commit tools/against-base runs these tests on
    faults = None  # type: ignore[assignment]

Make = Callable[..., MwManager]

MAX_DEPTH = 100
"""``mw.codec.MAX_DEPTH``, as documented."""
MAX_TTL_S = 10 * 365 * 24 * 3600
"""``mw.ttl.MAX_TTL_S``, as documented."""

FIXTURE_SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_safe = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=":"), max_size=8)
surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
unencodable = st.tuples(_safe, surrogate, _safe).map("".join)
"""Text UTF-8 cannot encode: otherwise valid key characters around one lone surrogate."""
_plain = st.text(alphabet="abcxyz019-_.", max_size=8)
unencodable_name = st.tuples(_plain, surrogate, _plain).map("".join)
"""The same for a namespace, which may hold no whitespace either."""


# --- the ledger: what a call may not spend ------------------------------------------------------------------
def _l2_contents(m: MwManager) -> dict[bytes, bytes | None]:
    """Every key of this test's namespace and its bytes, read by a raw client (no tier code involved)."""
    raw = m.l2.client
    return {k: raw.get(k) for k in sorted(raw.scan_iter(match=m.l2.prefix + "*"))}


def _state(m: MwManager) -> dict[str, Any]:
    cluster = m.cluster
    return {
        "generation": cluster.generation,
        "telemetry": m.telemetry.counters(),
        "hot": m.telemetry.hot.top(1000),
        "l0": sorted(m.l0.keys()),
        "l1": len(m.l1),
        "l2": _l2_contents(m),
        "pending": bool(getattr(cluster, "pending", ())),  # changes that could not reach L2 (newer than base)
        "mlt_queries": m.mlt.queries,
    }


class BusWatch:
    """A raw subscriber on the bus channel: whether a sequence number was spent between two probes.

    Each probe deletes a key of its own (one message). A probe's delete that L2 did not confirm is replayed, a
    second message with the next number: so the check is that every message of this origin between the first
    probe and the last is a probe's and that their numbers follow each other, not that two probes are 1 apart.
    """

    def __init__(self, m: MwManager) -> None:
        self.m = m
        self.pubsub = m.l2.client.pubsub()
        self.pubsub.subscribe(m.l2.channel(INV_CHANNEL))
        self._next("subscribe")
        self.probes = 0
        self.last: int | None = None

    def _next(self, kind: str) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            msg = self.pubsub.get_message(timeout=0.05)
            if msg is not None and msg["type"] == kind:
                return msg  # type: ignore[no-any-return]
        raise AssertionError(f"no {kind} on the bus channel within 10 s")

    def probe(self) -> None:
        """Delete a probe key; read this origin's messages up to that delete's, asserting none was another's and
        no number was skipped since the previous probe."""
        self.probes += 1
        mine = f"bad-input-probe-{self.probes}"
        self.m.del_global_key(mine)
        while True:
            body = json.loads(self._next("message")["data"])
            if body["o"] != self.m.cluster.bus.origin:
                continue
            keys, seq = " ".join(body["k"]), int(body["s"])
            assert "bad-input-probe-" in keys, f"a message besides the probes' (an invalidation was sent): {keys}"
            if self.last is not None:
                assert seq == self.last + 1, "an invalidation sequence number was spent: other processes would flush"
            self.last = seq
            if mine in keys:
                return

    def close(self) -> None:
        self.pubsub.close()


@contextlib.contextmanager
def recording() -> Iterator[list[str]]:
    """Every seam point passed and every tier event emitted by this thread while the block runs."""
    me = threading.get_ident()
    seen: list[str] = []

    def seam(point: str, key: str | None) -> None:
        if threading.get_ident() == me:
            seen.append(f"seam {point} {key!r}")

    def tier(event: observe.KeyEvent) -> None:
        if threading.get_ident() == me:
            seen.append(f"{event.op} {event.tier} {event.key!r}")

    remove = observe.add_observer(tier)
    try:
        with faults.injected(seam) if faults is not None else contextlib.nullcontext():  # type: ignore[arg-type]
            yield seen
    finally:
        remove()


def refused_before_anything_spent(m: MwManager, call: Callable[[], object], error: type[Exception]) -> Exception:
    """Run ``call``, which must raise ``error`` having spent nothing; return the error."""
    watch = BusWatch(m)
    try:
        watch.probe()
        before = _state(m)
        with recording() as seen, pytest.raises(error) as info:
            call()
        after = _state(m)
        assert seen == [], f"touched before refusing: {seen}"
        assert after == before
        watch.probe()
    finally:
        watch.close()
    return info.value


# --- 1. keys UTF-8 cannot encode ---------------------------------------------------------------------------
def _never(label: str) -> Callable[[], Any]:
    def load() -> Any:
        raise AssertionError(f"{label}: the loader ran for a key that breaks the grammar")

    return load


def _lead_plan_finish(m: MwManager, bad: str) -> None:
    m.finish_load(m.begin_load("doc", "s", bad), 1)


KEY_CALLS: dict[str, tuple[str, Callable[[MwManager, str], object]]] = {
    "set_global_item_typed kind": ("kind", lambda m, b: m.set_global_item_typed(b, "s", "1", {"v": 1})),
    "set_global_item_typed scope": ("scope", lambda m, b: m.set_global_item_typed("doc", b, "1", {"v": 1})),
    "set_global_item_typed id": ("item_id", lambda m, b: m.set_global_item_typed("doc", "s", b, {"v": 1})),
    "set_global_item": ("item_id", lambda m, b: m.set_global_item(b, [1])),
    "get_item_typed": ("item_id", lambda m, b: m.get_item_typed("doc", "s", b, loader=_never("get_item_typed"))),
    "get_or_load kind": ("kind", lambda m, b: m.get_or_load(b, "s", "1", loader=_never("get_or_load"))),
    "get_or_load id": ("item_id", lambda m, b: m.get_or_load("doc", "s", b, loader=_never("get_or_load"))),
    "get_or_load_async": (
        "item_id",
        lambda m, b: asyncio.run(m.get_or_load_async("doc", "s", b, loader=_never("get_or_load_async"))),
    ),
    "get_item": ("item_id", lambda m, b: m.get_item(b, loader=_never("get_item"))),
    "get_item is_global": ("item_id", lambda m, b: m.get_item(K.GLOBAL_PREFIX + b, is_global=True)),
    "get_many_typed ids": ("item_id", lambda m, b: m.get_many_typed("doc", "s", ["ok-1", b, "ok-2"])),
    "get_many_typed_async ids": ("item_id", lambda m, b: asyncio.run(m.get_many_typed_async("doc", "s", ["ok", b]))),
    "set_item": ("item_id", lambda m, b: m.set_item(b, {"scratch": 1})),
    "set_organ_item_typed": ("item_id", lambda m, b: m.set_organ_item_typed("doc", b, [1])),
    "del_global_key": ("item_id", lambda m, b: m.del_global_key(b)),
    "del_global_key_async": ("item_id", lambda m, b: asyncio.run(m.del_global_key_async(b))),
    "del_global_item_typed": ("scope", lambda m, b: m.del_global_item_typed("doc", b, "1")),
    "set_negative_cache": ("item_id", lambda m, b: m.set_negative_cache("doc", "s", b)),
    "check_negative_cache": ("kind", lambda m, b: m.check_negative_cache(b, "s", "1")),
    "begin_load": ("item_id", _lead_plan_finish),
    "try_set_inflight": ("key", lambda m, b: m.try_set_inflight(b, 5)),
    "get_task": ("task_id", lambda m, b: m.get_task(b)),
    "invalidate_task": ("task_id", lambda m, b: m.invalidate_task(b)),
    "update_task_status": ("task_id", lambda m, b: m.update_task_status(b, "running")),
    "cache_task_row": ("task_id", lambda m, b: m.cache_task_row({"id": b, "status": "running"})),
    "mlt put_item": ("kind", lambda m, b: m.mlt.put_item(b, "s", "1", {"v": 1})),
    "mlt get_item": ("item_id", lambda m, b: m.mlt.get_item("doc", "s", b)),
}


@pytest.mark.parametrize("where", list(KEY_CALLS))
@FIXTURE_SETTINGS
@given(bad=unencodable)
def test_a_key_part_utf8_cannot_encode_is_refused_before_anything_is_spent(
    make_manager: Make, where: str, bad: str
) -> None:
    m = make_manager("agent-1")
    m.set_global_item_typed("doc", "s", "ok-1", {"v": "present"})  # something in every tier to stay put
    part, call = KEY_CALLS[where]
    error = refused_before_anything_spent(m, lambda: call(m, bad), KeyGrammarError)
    assert isinstance(error, KeyGrammarError) and error.part == part
    assert "surrogate" in error.reason and part in str(error)
    str(error).encode("utf-8")  # the message itself can be logged anywhere


@FIXTURE_SETTINGS
@given(bad=unencodable_name)
def test_an_organ_id_or_namespace_utf8_cannot_encode_is_refused(base_config: MwConfig, bad: str) -> None:
    with pytest.raises(KeyGrammarError) as info:
        MwManager(bad, base_config)
    assert info.value.part == "organ_id"
    for make in (lambda: base_config.replace(namespace=bad), lambda: MwConfig.from_env({"MW_NAMESPACE": bad})):
        with pytest.raises(KeyGrammarError) as info:
            make()
        assert info.value.part == "namespace" and "surrogate" in info.value.reason


@given(bad=unencodable)
def test_every_key_builder_names_the_part_that_cannot_be_encoded(bad: str) -> None:
    cases: list[tuple[str, Callable[[], object]]] = [
        ("kind", lambda: K.global_typed_key(bad, "s", "1")),
        ("scope", lambda: K.global_typed_key("doc", bad, "1")),
        ("item_id", lambda: K.global_typed_key("doc", "s", bad)),
        ("organ_id", lambda: K.organ_key(bad, "1")),
        ("item_id", lambda: K.organ_typed_key("a", "doc", bad)),
        ("item_id", lambda: K.global_key(bad)),
        ("task_id", lambda: K.task_key(bad)),
        ("key", lambda: K.check_full_key(bad)),
    ]
    for part, build in cases:
        with pytest.raises(KeyGrammarError) as info:
            build()
        assert info.value.part == part


@given(st.lists(st.characters() | surrogate, min_size=1, max_size=30).map("".join))
def test_every_key_the_grammar_accepts_is_valid_utf8(text: str) -> None:
    for build in (lambda: K.global_typed_key("doc", "s", text), lambda: K.global_key(text)):
        try:
            key = build()
        except KeyGrammarError:
            continue
        key.encode("utf-8")


# --- 2. values too deep or cyclic ---------------------------------------------------------------------------
def nested(kind: str, depth: int) -> Any:
    """A value whose containers nest ``depth`` deep (built iteratively: the builder must not recurse)."""
    value: Any = "leaf"
    for i in range(depth):
        if kind == "list":
            value = [value]
        elif kind == "dict":
            value = {"k": value}
        elif kind == "tuple":
            value = (value,)
        elif kind == "int-keyed dict":
            value = {1: value}
        else:  # mixed
            value = [value] if i % 3 == 0 else {"k": value} if i % 3 == 1 else (value, 1)
    return value


def cyclic(kind: str) -> Any:
    if kind == "list":
        a: list[Any] = []
        a.append(a)
        return a
    if kind == "dict":
        d: dict[str, Any] = {}
        d["self"] = d
        return d
    outer: list[Any] = [{"row": 1}]
    outer[0]["back"] = outer  # a cycle through two containers
    return outer


KINDS = ["list", "dict", "tuple", "int-keyed dict", "mixed"]
CYCLES = ["list", "dict", "through two"]


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(KINDS), depth=st.integers(min_value=1, max_value=3 * MAX_DEPTH))
def test_depth_up_to_the_limit_round_trips_and_deeper_is_a_codec_error(fmt: str, kind: str, depth: int) -> None:
    codec = Codec(fmt)
    value = nested(kind, depth)
    if depth <= MAX_DEPTH:
        assert codec.decode(codec.encode(value, None))[0] == value
        assert loads_json(dumps_json(value)) == value
        return
    for encode in (lambda: codec.encode(value, None), lambda: dumps_json(value)):
        with pytest.raises(CodecError, match=f"MAX_DEPTH={MAX_DEPTH}"):
            encode()


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize("shape", [*(f"deep {k}" for k in KINDS), *(f"cyclic {c}" for c in CYCLES)])
def test_a_hundred_thousand_deep_or_cyclic_value_is_a_codec_error(fmt: str, shape: str) -> None:
    how, kind = shape.split(" ", 1)
    value = nested(kind, 100_000) if how == "deep" else cyclic(kind)
    with pytest.raises(CodecError, match=f"MAX_DEPTH={MAX_DEPTH}"):
        Codec(fmt).encode(value, None)
    with pytest.raises(CodecError, match=f"MAX_DEPTH={MAX_DEPTH}"):
        dumps_json(value)


text_any = st.lists(st.characters() | surrogate, max_size=12).map("".join)
"""Any text, lone surrogates often (``st.text`` merges its alphabet and would drop them)."""
awkward = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text_any | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(text_any, inner, max_size=4)
        | st.dictionaries(st.integers(), inner, max_size=3)
    ),
    max_leaves=16,
)


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@given(value=awkward)
def test_any_value_round_trips_or_raises_codec_error_only(fmt: str, value: Any) -> None:
    """Lone surrogates, ints msgpack cannot carry, nan: a round trip or a CodecError, nothing else.

    The Mlt text of a value is always text the database driver can send (UTF-8), or a CodecError.
    """
    with contextlib.suppress(CodecError):
        dumps_json(value).encode("utf-8")
    codec = Codec(fmt)
    try:
        data = codec.encode(value, None)
    except CodecError:
        return
    back = codec.decode(data)[0]
    assert json.dumps(back, default=repr, sort_keys=True) == json.dumps(value, default=repr, sort_keys=True)


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, '{"k":' * 100_000 + "1" + "}" * 100_000, '{"$dec": "not a number"}'],
    ids=["deep list", "deep object", "bad decimal tag"],
)
def test_mlt_text_too_deep_or_corrupt_is_a_codec_error(text: str) -> None:
    with pytest.raises(CodecError):
        loads_json(text)


DEEP_PAYLOADS = {
    "json": b"[" * 100_000 + b"]" * 100_000,
    "msgpack": b"\x91" * 100_000 + b"\x01",
}


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize("tier", ["L1", "L2"])
def test_a_too_deep_cached_entry_is_a_counted_miss_not_a_crash(
    make_manager: Make, clock: Any, fmt: str, tier: str
) -> None:
    m = make_manager("agent-1", codec=fmt)
    key = K.global_typed_key("doc", "s", "deep")
    expire_at = clock() + 600
    data = Codec(fmt).encode(0, expire_at)[:HEADER_SIZE] + DEEP_PAYLOADS[fmt]  # a valid header, a hostile payload
    if tier == "L2":
        m.l2.set(key, data, 600_000)
    else:
        m.l1.set(key, data, expire_at)
    loads: list[int] = []
    assert m.get_item_typed("doc", "s", "deep", loader=lambda: loads.append(1) or {"fresh": True}) == {"fresh": True}
    assert m.telemetry.corrupt_entries == 1 and loads == [1]
    assert m.get_item_typed("doc", "s", "deep") == {"fresh": True}, "the fresh value replaced the corrupt entry"


@pytest.mark.parametrize("shape", ["deep", "cyclic"])
def test_writing_a_too_deep_or_cyclic_value_spends_nothing(make_manager: Make, shape: str) -> None:
    m = make_manager("agent-1")
    m.set_global_item_typed("doc", "s", "1", {"v": "old"})
    value = nested("mixed", 100_000) if shape == "deep" else cyclic("through two")
    for call in (
        lambda: m.set_global_item_typed("doc", "s", "1", value),
        lambda: m.set_global_item("doc-1", value),
    ):
        error = refused_before_anything_spent(m, call, CodecError)
        assert f"MAX_DEPTH={MAX_DEPTH}" in str(error)
    assert m.get_item_typed("doc", "s", "1") == {"v": "old"}
    with pytest.raises(CodecError, match=f"MAX_DEPTH={MAX_DEPTH}"):
        m.set_item("scratch", value)  # L0 only: its private copy is bounded the same way
    assert "organ:agent-1:item:scratch" not in m.l0


@pytest.mark.parametrize("shape", ["deep", "cyclic"])
def test_a_loader_returning_a_too_deep_value_gets_a_codec_error_and_frees_the_key(
    make_manager: Make, shape: str
) -> None:
    m = make_manager("agent-1")
    bad = nested("list", 100_000) if shape == "deep" else cyclic("list")
    calls: list[str] = []
    with pytest.raises(CodecError, match=f"MAX_DEPTH={MAX_DEPTH}"):
        m.get_or_load("doc", "s", "1", loader=lambda: calls.append("bad") or bad)
    assert m.telemetry.uncacheable == 1 and calls == ["bad"]
    # The lease and the single flight were given back: the next caller loads at once.
    assert m.get_or_load("doc", "s", "1", loader=lambda: calls.append("good") or [1]) == [1]
    assert calls == ["bad", "good"]


# --- 3. task rows with out-of-range numbers ---------------------------------------------------------------
OUT_OF_RANGE: dict[str, object] = {
    "int 10**400": 10**400,
    "inf": math.inf,
    "-inf": -math.inf,
    "nan": math.nan,
    "year 10000 (1e12 s)": 1e12,
    "before year 1": -1e12,
}


@given(st.integers() | st.floats())
def test_to_epoch_of_any_number_is_a_finite_instant_or_a_task_row_error(value: float) -> None:
    try:
        at = to_epoch(value, "lease_expires_at")
    except TaskRowError as exc:
        assert "lease_expires_at" in str(exc)
        return
    assert at is not None and math.isfinite(at)
    import datetime as dt

    dt.datetime.fromtimestamp(at, dt.timezone.utc)  # an instant a datetime can hold


@pytest.mark.parametrize("field", ["lease_expires_at", "run_after"])
@pytest.mark.parametrize("bad", list(OUT_OF_RANGE))
@pytest.mark.parametrize("status", ["running", "completed"])
def test_caching_a_row_with_an_out_of_range_timestamp_names_the_field_and_spends_nothing(
    make_manager: Make, field: str, bad: str, status: str
) -> None:
    m = make_manager("agent-1")
    row = {"id": 7, "status": status, field: OUT_OF_RANGE[bad]}
    error = refused_before_anything_spent(m, lambda: m.cache_task_row(row), TaskRowError)
    assert isinstance(error, TaskRowError) and error.field == field and field in str(error)


@pytest.mark.parametrize("field", ["lease_expires_at", "run_after"])
@pytest.mark.parametrize("bad", list(OUT_OF_RANGE))
def test_storing_a_row_with_an_out_of_range_timestamp_is_refused_before_the_store(
    make_manager: Make, field: str, bad: str
) -> None:
    m = make_manager("agent-1")
    m.mlt.put_task({"id": 8, "status": "queued"})
    before, queries = m.mlt.get_task(8), m.mlt.queries
    for call in (
        lambda: m.update_task_status(8, "running", **{field: OUT_OF_RANGE[bad]}),
        lambda: m.mlt.put_task({"id": 8, "status": "running", field: OUT_OF_RANGE[bad]}),
    ):
        with pytest.raises(TaskRowError) as info:
            call()
        assert info.value.field == field
    assert m.mlt.queries == queries, "the store was asked before the row was checked"
    assert m.mlt.get_task(8) == before


@pytest.mark.parametrize("bad", list(OUT_OF_RANGE))
def test_a_stored_row_with_an_out_of_range_timestamp_is_returned_uncached(make_manager: Make, bad: str) -> None:
    """A row another writer left in the store: served as it is, never cached with a made-up TTL, no crash."""
    m = make_manager("agent-1")
    row = {"id": 9, "status": "running", "lease_expires_at": OUT_OF_RANGE[bad]}
    m.mlt._upsert_task("9", "running", dumps_json(row))  # the store's own statement, as another writer's row
    got = m.get_task(9)
    assert got is not None and got["status"] == "running"
    assert m.telemetry.uncacheable == 1
    assert m.l2.get(K.task_key(9)) is None and K.task_key(9) not in m.l0


# --- 4. TTLs out of range -----------------------------------------------------------------------------------
BAD_TTLS: dict[str, object] = {
    "1e17": 1e17,
    "just over 10 years": MAX_TTL_S + 1,
    "int 10**400": 10**400,
    "negative": -1,
    "nan": math.nan,
    "inf": math.inf,
    "True": True,
    "str": "60",
}


def _finish_with(m: MwManager, ttl: object) -> None:
    plan = m.begin_load("doc", "s", "plan")
    assert plan.state == "lead"
    try:
        m.finish_load(plan, {"v": 1}, ttl_s=ttl)  # type: ignore[arg-type]
    finally:
        m.finish_load(plan, {"v": 1})  # the plan is still ours: complete it


TTL_CALLS: dict[str, Callable[[MwManager, object], object]] = {
    "set_global_item_typed": lambda m, t: m.set_global_item_typed("doc", "s", "1", {"v": 2}, ttl_s=t),  # type: ignore[arg-type]
    "set_global_item": lambda m, t: m.set_global_item("doc-1", {"v": 2}, ttl_s=t),  # type: ignore[arg-type]
    "get_or_load": lambda m, t: m.get_or_load("doc", "s", "2", loader=_never("get_or_load"), ttl_s=t),  # type: ignore[arg-type]
    "get_or_load_async": lambda m, t: asyncio.run(
        m.get_or_load_async("doc", "s", "2", loader=_never("get_or_load_async"), ttl_s=t)  # type: ignore[arg-type]
    ),
    "get_item_typed": lambda m, t: m.get_item_typed("doc", "s", "2", loader=_never("get_item_typed"), ttl_s=t),  # type: ignore[arg-type]
    "get_item_typed_async": lambda m, t: asyncio.run(
        m.get_item_typed_async("doc", "s", "2", loader=_never("get_item_typed_async"), ttl_s=t)  # type: ignore[arg-type]
    ),
    "set_negative_cache": lambda m, t: m.set_negative_cache("doc", "s", "3", ttl_s=t),  # type: ignore[arg-type]
    "try_set_inflight": lambda m, t: m.try_set_inflight("claim", t),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("method", list(TTL_CALLS))
def test_every_out_of_range_ttl_is_a_value_error_naming_it_before_redis(make_manager: Make, method: str) -> None:
    m = make_manager("agent-1")
    m.set_global_item_typed("doc", "s", "1", {"v": 1})
    for name, bad in BAD_TTLS.items():
        error = refused_before_anything_spent(m, lambda bad=bad: TTL_CALLS[method](m, bad), ConfigError)
        assert isinstance(error, ConfigError) and isinstance(error, ValueError), name
        assert error.variable == "ttl_s", name
        shown = "bits" if isinstance(bad, int) and bad > 2**64 else repr(bad)
        assert shown in str(error), f"{name}: the message does not show the value: {error}"


def test_finish_load_checks_its_ttl_before_the_fill(make_manager: Make) -> None:
    m = make_manager("agent-1")
    for name, bad in BAD_TTLS.items():
        with pytest.raises(ConfigError):
            _finish_with(m, bad)
        assert m.get_item_typed("doc", "s", "plan") == {"v": 1}, name
        m.del_global_item_typed("doc", "s", "plan")


def test_ten_years_is_accepted_to_the_second(make_manager: Make) -> None:
    m = make_manager("agent-1")
    m.set_global_item_typed("doc", "s", "long", {"v": 1}, ttl_s=MAX_TTL_S)
    assert m.l2.pttl(K.global_typed_key("doc", "s", "long")) > (MAX_TTL_S - 60) * 1000
    with pytest.raises(ConfigError):
        m.set_global_item_typed("doc", "s", "long", {"v": 1}, ttl_s=MAX_TTL_S + 1)


@pytest.mark.parametrize("setting", ["l1_ttl_s", "l2_ttl_s", "lease_ttl_s", "task running"])
def test_ttl_settings_out_of_range_are_refused_naming_the_variable(setting: str) -> None:
    for name, bad in BAD_TTLS.items():
        if setting == "task running":
            variable, changes = "MW_TASK_TTL_RUNNING_S", {"task_ttls_s": {**MwConfig().task_ttls_s, "running": bad}}
        else:
            variable, changes = f"MW_{setting.upper()}", {setting: bad}
        with pytest.raises(ConfigError) as info:
            MwConfig.from_env({}, **changes)
        assert info.value.variable == variable, name


@pytest.mark.parametrize("variable", ["MW_L2_TTL_S", "MW_TASK_TTL_RUNNING_S", "MW_LEASE_TTL_S"])
def test_ttl_variables_out_of_range_are_refused(variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        MwConfig.from_env({variable: "1e17"})
    assert info.value.variable == variable
