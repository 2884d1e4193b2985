"""Behaviour of the S3-FIFO policy behind the L0/L1 tiers: bounds, admission, eviction order."""

from __future__ import annotations

import bisect
import itertools
import random
import re
import threading

import cachetools
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mw.policy import S3FIFO, Entry


def resident(c: S3FIFO) -> list[object]:
    """Snapshot of the resident keys (S3FIFO is not iterable on purpose: no live iteration)."""
    return c.keys()


def recorder() -> tuple[list[Entry], S3FIFO]:
    evicted: list[Entry] = []
    return evicted, S3FIFO(100, on_evict=evicted.append)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"max_items": 0}, 0),
        ({"max_items": -3}, -3),
        ({"max_items": 2.5}, 2.5),
        ({"max_items": 10, "max_bytes": 0}, 0),
        ({"max_items": 10, "max_bytes": -1}, -1),
        ({"max_items": 10, "small_ratio": 0.0}, 0.0),
        ({"max_items": 10, "small_ratio": 1.0}, 1.0),
    ],
)
def test_bad_constructor_args_raise_naming_the_value(kwargs: dict[str, float], bad: float) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        S3FIFO(**kwargs)  # type: ignore[arg-type]


def test_basic_map_protocol() -> None:
    c = S3FIFO(10)
    assert c.get("a") is None and c.get("a", 7) == 7 and c.get_entry("a") is None
    c.set("a", 1, expire_at=5.0, size=3)
    assert "a" in c and len(c) == 1 and c.keys() == ["a"] and c.nbytes == 3
    e = c.peek_entry("a")
    assert e is not None and (e.key, e.value, e.expire_at, e.size, e.freq) == ("a", 1, 5.0, 3, 0)
    assert c.get("a") == 1 and c.get_entry("a") is e and e.freq == 2
    c.peek_entry("a")
    assert e.freq == 2, "peek must not count as an access"
    for _ in range(10):
        c.get("a")
    assert e.freq == 3, "freq is capped at 3"
    assert c.pop("a") is e and c.pop("a") is None
    assert len(c) == 0 and c.nbytes == 0 and "a" not in c


def test_item_bound_holds_and_evictions_are_counted() -> None:
    evicted, c = recorder()
    for i in range(1000):
        c.set(i, i)
        assert len(c) <= 100
    assert len(c) == 100
    assert c.evictions == 900 == len(evicted)
    assert all(e.key not in c for e in evicted)
    assert len(c._ghost) <= 90, "the ghost remembers at most main-capacity keys"


def test_byte_bound_holds_with_mixed_sizes() -> None:
    c = S3FIFO(1000, max_bytes=500)
    rng = random.Random(7)
    for i in range(2000):
        c.set(i, i, size=rng.randint(1, 60))
        assert c.nbytes <= 500
        assert i in c, "a fitting entry is always admitted"
    assert c.nbytes == sum(c.peek_entry(k).size for k in resident(c))  # type: ignore[union-attr]


def test_one_hit_wonders_are_evicted_before_reaccessed_keys() -> None:
    evicted, c = recorder()
    for i in range(100):
        c.set(i, i)
    reread = set(range(0, 100, 2))
    for k in reread:
        c.get(k)
        c.get(k)
    for i in range(100, 150):
        c.set(i, i)
    assert len(evicted) == 50
    assert not reread & {e.key for e in evicted}
    assert reread <= set(c.keys())


def test_scan_does_not_flush_a_hot_working_set() -> None:
    hot = [f"hot{i}" for i in range(50)]
    ours = S3FIFO(100)
    lru: cachetools.LRUCache[str, int] = cachetools.LRUCache(100)
    for k in hot:
        ours.set(k, 1)
        lru[k] = 1
    for _ in range(3):
        for k in hot:
            ours.get(k)
            lru.get(k)
    for i in range(10_000):
        ours.set(f"scan{i}", 0)
        lru[f"scan{i}"] = 0
    assert all(k in ours for k in hot)
    assert not any(k in lru for k in hot), "the scan must be long enough to flush an LRU"


def test_ghost_hit_is_readmitted_to_main_and_outlives_a_scan() -> None:
    evicted, c = recorder()
    for i in range(200):
        c.set(f"warm{i}", i)
    ghost_key = evicted[-1].key
    assert ghost_key not in c
    c.set(ghost_key, "back")
    c.set("fresh", "new")
    entry = c.peek_entry(ghost_key)
    assert entry is not None and entry.value == "back"
    for i in range(1000):
        c.set(f"scan{i}", i)
    assert ghost_key in c, "a ghost hit goes to main, which a scan of one-hit keys does not touch"
    assert "fresh" not in c, "a plain miss goes to small and is flushed by the scan"


def test_replace_keeps_residency_freq_and_updates_bytes() -> None:
    evicted: list[Entry] = []
    c = S3FIFO(10, max_bytes=100, on_evict=evicted.append)
    for i in range(10):
        c.set(i, i, size=5)
    c.get(0)
    c.get(0)
    c.set(0, "v2", expire_at=9.0, size=8)
    e = c.peek_entry(0)
    assert e is not None and (e.value, e.expire_at, e.size, e.freq) == ("v2", 9.0, 8, 2)
    assert c.nbytes == 53 and len(c) == 10 and c.evictions == 0
    c.get(1)
    c.get(1)
    c.set(1, "grown", size=70)
    grown = c.peek_entry(1)
    assert c.nbytes <= 100 and grown is not None and (grown.value, grown.size, grown.freq) == ("grown", 70, 2)
    assert evicted and 1 not in {v.key for v in evicted}, "growing in place evicts others, never itself"
    assert c.nbytes == sum(c.peek_entry(k).size for k in resident(c))  # type: ignore[union-attr]
    for i in range(100, 130):
        c.set(i, i, size=1)
    assert 0 in c, "the replaced, re-read entry kept its freq and was promoted, not evicted"


def test_oversize_entry_is_not_admitted_and_drops_the_old_value() -> None:
    evicted: list[Entry] = []
    c = S3FIFO(10, max_bytes=100, on_evict=evicted.append)
    c.set("big", 1, size=101)
    assert "big" not in c and c.nbytes == 0
    c.set("k", "old", size=10)
    c.set("other", 1, size=10)
    c.set("k", "new", size=101)
    assert "k" not in c and c.nbytes == 10 and len(c) == 1
    assert c.evictions == 0 and evicted == []
    c.set("exact", 1, size=90)
    assert "exact" in c and c.nbytes == 100


def test_set_reports_whether_the_entry_was_stored() -> None:
    """L0's holder index and L1's returned expiry follow residency: ``set`` must say when it stored nothing."""
    c = S3FIFO(2, max_bytes=100)
    assert c.set("a", 1, size=10) is True
    assert c.set("a", 2, size=60) is True, "a replacement that fits in place"
    assert c.set("b", 1, size=50) is True and c.set("c", 1, size=50) is True, "stored after evicting others"
    assert c.set("c", 2, size=101) is False and "c" not in c


def test_on_evict_only_for_capacity_evictions() -> None:
    evicted, c = recorder()
    for i in range(100):
        c.set(i, f"v{i}")
    c.pop(5)
    assert c.clear() == 99
    assert evicted == [] and c.evictions == 0
    for i in range(150):
        c.set(i, f"v{i}")
    assert len(evicted) == c.evictions == 50
    assert all(isinstance(e, Entry) and e.value == f"v{e.key}" for e in evicted)


def test_many_pops_do_not_leak_queue_slots() -> None:
    c = S3FIFO(50)
    for i in range(10):
        c.set(("kept", i), i)
    for i in range(100_000):
        c.set(i, i)
        c.pop(i)
    assert len(c) == 10 and c.evictions == 0
    assert len(c._small) + len(c._main) <= 2 * 10 + 64 + 1, "stale references must be compacted"
    assert sorted(c.keys()) == [("kept", i) for i in range(10)]


def test_get_is_safe_against_concurrent_mutation() -> None:
    c = S3FIFO(64, max_bytes=1000)
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                for k in range(200):
                    c.get(k)
                    c.get_entry(k)
                    _ = k in c
                    len(c)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    rng = random.Random(3)
    try:
        for _ in range(30_000):
            op = rng.random()
            k = rng.randrange(200)
            if op < 0.7:
                c.set(k, k, size=rng.randint(1, 40))
            elif op < 0.98:
                c.pop(k)
            else:
                c.clear()
    finally:
        stop.set()
        t.join()
    assert errors == []


def zipf_keys(n_objects: int, n_requests: int, alpha: float, seed: int) -> list[int]:
    rng = random.Random(seed)
    cum = list(itertools.accumulate(1.0 / (r**alpha) for r in range(1, n_objects + 1)))
    ids = list(range(n_objects))
    rng.shuffle(ids)
    return [ids[min(bisect.bisect(cum, rng.random() * cum[-1]), n_objects - 1)] for _ in range(n_requests)]


@pytest.fixture(scope="module")
def zipf_1_0() -> list[int]:
    return zipf_keys(n_objects=10_000, n_requests=100_000, alpha=1.0, seed=42)


def replay(cache: S3FIFO, keys: list[int]) -> int:
    hits = 0
    for k in keys:
        if cache.get(k) is None:
            cache.set(k, True)
        else:
            hits += 1
    return hits


@pytest.mark.parametrize(("size", "expected_hits"), [(100, 50_587), (1000, 72_737)])
def test_zipf_hits_equal_libcachesim_s3fifo(zipf_1_0: list[int], size: int, expected_hits: int) -> None:
    """Hit counts recorded from libcachesim 0.3.5 ``S3FIFO(size)`` replaying this exact trace."""
    assert replay(S3FIFO(size), zipf_1_0) == expected_hits


def test_zipf_hit_ratio_beats_lru_by_a_margin(zipf_1_0: list[int]) -> None:
    keys = zipf_1_0
    size = 100
    ours = S3FIFO(size)
    lru: cachetools.LRUCache[int, bool] = cachetools.LRUCache(size)
    ours_hits = lru_hits = 0
    for k in keys:
        if ours.get(k) is None:
            ours.set(k, True)
        else:
            ours_hits += 1
        if k in lru:
            lru[k]
            lru_hits += 1
        else:
            lru[k] = True
    ours_ratio, lru_ratio = ours_hits / len(keys), lru_hits / len(keys)
    assert ours_ratio >= lru_ratio + 0.07, (ours_ratio, lru_ratio)


class S3FIFOMachine(RuleBasedStateMachine):
    """Random op sequences against a model of what each key's value must be if resident."""

    MAX_ITEMS = 8
    MAX_BYTES = 100

    def __init__(self) -> None:
        super().__init__()
        self.evicted: list[Entry] = []
        self.cache = S3FIFO(self.MAX_ITEMS, max_bytes=self.MAX_BYTES, on_evict=self.evicted.append)
        self.latest: dict[int, tuple[int, int]] = {}
        self.counter = itertools.count()

    keys = st.integers(0, 20)

    @rule(key=keys, size=st.integers(0, 120))
    def set(self, key: int, size: int) -> None:
        value = next(self.counter)
        before = len(self.evicted)
        self.cache.set(key, value, size=size)
        victims = self.evicted[before:]
        assert all(v.key != key and v.key not in self.cache for v in victims)
        for v in victims:
            self.latest.pop(v.key, None)
        if size > self.MAX_BYTES:
            assert key not in self.cache and not victims
            self.latest.pop(key, None)
        else:
            entry = self.cache.peek_entry(key)
            assert entry is not None and entry.value == value and entry.size == size
            self.latest[key] = (value, size)

    @rule(key=keys)
    def get(self, key: int) -> None:
        got = self.cache.get(key)
        assert got is None or got == self.latest[key][0]

    @rule(key=keys)
    def pop(self, key: int) -> None:
        entry = self.cache.pop(key)
        assert (entry is None) == (key not in self.latest)
        self.latest.pop(key, None)
        assert key not in self.cache

    @precondition(lambda self: len(self.latest) > 0)
    @rule()
    def clear(self) -> None:
        assert self.cache.clear() == len(self.latest)
        self.latest.clear()

    @invariant()
    def bounds_and_accounting_hold(self) -> None:
        c = self.cache
        assert len(c) <= self.MAX_ITEMS and c.nbytes <= self.MAX_BYTES
        assert set(c.keys()) == set(self.latest)
        assert c.nbytes == sum(size for _, size in self.latest.values())
        assert c.evictions == len(self.evicted)
        for k in resident(c):
            entry = c.peek_entry(k)
            assert entry is not None and (entry.value, entry.size) == self.latest[k]


TestS3FIFOStateful = S3FIFOMachine.TestCase
TestS3FIFOStateful.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
