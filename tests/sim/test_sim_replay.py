"""``mw-sim replay``: traces the tests write (oracleGeneral and CSV) drive the fleet and are judged like a scenario.

Also the readers (round trips, and every bad record a clear exit-2 error naming the file) and the single-cache
comparison of the L0 policy and LRU, checked against a hand-computed trace and against cachetools / libCacheSim.
"""

from __future__ import annotations

import itertools
import json
import random
import struct
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import cachetools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulations.cli import EXIT_ERROR, EXIT_FAIL, EXIT_PASS, main
from simulations.replay import WARMUP_SHARE
from simulations.single_cache import LRU, SingleCaches
from simulations.trace import (
    ORACLE_GENERAL,
    Request,
    TraceError,
    guess_format,
    read_csv,
    read_oracle_general,
    write_csv,
    write_oracle_general,
)

QUICK = ["--agents", "4", "--nodes", "2", "--quiet"]


def skewed(n: int, objects: int = 60, seed: int = 1, per_second: float = 20.0) -> list[Request]:
    """``n`` requests, a few objects read again and again (Pareto popularity), sizes by object, ~20 per second."""
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(per_second)
        obj = min(int(rng.paretovariate(1.2)), objects)
        out.append(Request(float(int(t)), str(obj), 100 + 3 * obj))
    return out


def replay(tmp_path: Path, trace: Path, *args: str, out: str = "out") -> tuple[int, dict[str, Any]]:
    code = main(["replay", str(trace), *QUICK, *args, "--out", str(tmp_path / out)])
    result_file = tmp_path / out / "result.json"
    return code, json.loads(result_file.read_text()) if result_file.exists() else {}


def base_scenario(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "base.toml"
    path.write_text(f'name = "base"\n{body}\n')
    return path


# --- end to end -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["oracle-general", "csv"])
def test_replay_passes_with_verdict_plots_and_comparison(tmp_path: Path, fmt: str) -> None:
    requests = skewed(2000)
    if fmt == "csv":
        trace = tmp_path / "trace.csv"
        write_csv(trace, requests)
    else:
        trace = tmp_path / "trace.oracleGeneral.bin"
        write_oracle_general(trace, requests)
    code, result = replay(tmp_path, trace)
    assert code == EXIT_PASS
    assert result["verdict"]["passed"]
    rows = {c["name"]: c for c in result["verdict"]["checks"]}
    assert {
        "hit_ratio_week1",
        "heartbeats",
        "telemetry_truth",
        "l0_bounded",
        "no_db_stampede",
        "no_stale_reads",
    } <= set(rows)
    assert not rows["running_ttl"]["exercised"]  # no tasks in a trace
    span = requests[-1].time - requests[0].time
    assert result["params"]["duration_s"] == span + 1
    assert result["params"]["warmup_s"] == pytest.approx(WARMUP_SHARE * (span + 1))
    # Every request of the trace is a read of the fleet; with caching disabled, every one is an Mlt query.
    assert result["runs"]["cached"]["requests"]["total"] == len(requests)
    assert result["runs"]["baseline"]["requests"]["total"] == len(requests)
    assert result["mlt"]["queries_baseline"] == len(requests)
    assert result["mlt"]["queries_cached"] == len({r.key for r in requests})  # one load per object: no TTL expires
    rep = result["replay"]
    assert rep["format"] == fmt and rep["requests"] == len(requests) and rep["sized"]
    assert rep["objects"] == len({r.key for r in requests})
    single = rep["single_cache"]
    assert single["requests"] == len(requests)
    for bound in ("items", "bytes"):
        for policy in ("lru", "s3fifo"):
            assert 0 < single[bound][policy]["hit_ratio"] < 1
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Trace replay" in report and "S3-FIFO (L0 policy)" in report
    for plot in ("hit_ratio.png", "mlt_qps.png", "l0_size.png", "loads_per_expiry.png"):
        assert (tmp_path / "out" / plot).stat().st_size > 1000


def test_lru_figure_is_the_hand_computed_one(tmp_path: Path) -> None:
    # Two items of L0: a b a c b a. LRU hits only the second a (c evicts b, b evicts a, a evicts c): 1 of 6.
    # S3-FIFO (1 small slot, 1 main): a enters small, b goes straight to main (small is full before any eviction),
    # a hits, c evicts a from small (read once: to the ghost), b hits in main, a is a ghost hit and misses: 2 of 6.
    trace = tmp_path / "tiny.csv"
    trace.write_text("time,key\n0,a\n1,b\n2,a\n3,c\n4,b\n5,a\n")
    base = base_scenario(tmp_path, "[runtime]\nl0_max_items = 2\n")
    code, result = replay(tmp_path, trace, "--scenario", str(base), "--agents", "1", "--no-baseline")
    assert code == EXIT_FAIL  # six requests to three objects cannot reach a 0.70 hit ratio
    assert {c["name"] for c in result["verdict"]["checks"] if not c["passed"]} == {"hit_ratio_week1"}
    single = result["replay"]["single_cache"]
    assert single["items"]["max_items"] == 2
    assert single["items"]["lru"] == {"hits": 1, "hit_ratio": round(1 / 6, 6)}
    assert single["items"]["s3fifo"] == {"hits": 2, "hit_ratio": round(2 / 6, 6)}
    assert single["items"]["s3fifo_minus_lru"] == round(1 / 6, 6)
    assert "bytes" not in single and not result["replay"]["sized"]


def test_requests_are_spread_over_agents_and_nodes(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    write_csv(trace, skewed(1500))
    _, alone = replay(tmp_path, trace, "--agents", "1", "--nodes", "1", "--no-baseline", out="one")
    _, fleet = replay(tmp_path, trace, "--agents", "8", "--nodes", "4", "--no-baseline", out="eight")
    one, many = alone["runs"]["cached"]["requests"]["outcomes"], fleet["runs"]["cached"]["requests"]["outcomes"]
    assert one["l1"] == one["l2"] == 0  # one agent: its L0 holds everything it loaded
    assert many["l1"] > 0 and many["l2"] > 0  # another agent of the node, and of another node, loaded it first
    assert many["l0"] < one["l0"]
    assert fleet["runs"]["cached"]["heartbeats"]["fleet"]["agents_reporting"] == 8


def without_wall(value: Any) -> Any:
    """A result without what differs between two runs by design: wall figures, the command, the run's namespace."""
    if isinstance(value, dict):
        return {
            k: without_wall(v) for k, v in value.items() if k not in ("wall", "wall_total_s", "command", "namespace")
        }
    if isinstance(value, list):
        return [without_wall(v) for v in value]
    return value


def test_same_seed_same_result_other_seed_other_spread(tmp_path: Path) -> None:
    trace = tmp_path / "trace.bin"
    write_oracle_general(trace, skewed(1000))
    _, first = replay(tmp_path, trace, "--seed", "7", "--no-baseline", out="a")
    _, again = replay(tmp_path, trace, "--seed", "7", "--no-baseline", out="b")
    _, other = replay(tmp_path, trace, "--seed", "8", "--no-baseline", out="c")
    assert first["deterministic"]
    assert without_wall(first) == without_wall(again)
    assert first["replay"] == other["replay"]  # the trace and its single-cache figures do not depend on the seed
    assert first["runs"]["cached"]["series"] != other["runs"]["cached"]["series"]


def test_base_scenario_gives_runtime_and_targets(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    write_csv(trace, skewed(800))
    base = base_scenario(tmp_path, "[runtime]\nl0_max_items = 5\n[targets]\nhit_ratio_week1 = 0.999\n")
    code, result = replay(tmp_path, trace, "--scenario", str(base), "--no-baseline", "--warmup", "3")
    assert code == EXIT_FAIL
    assert [c["name"] for c in result["verdict"]["checks"] if not c["passed"]] == ["hit_ratio_week1"]
    assert result["runs"]["cached"]["config"]["l0_max_items"] == {
        "value": 5,
        "source": "scenario",
        "note": "the default is 10000",
    }
    assert result["replay"]["single_cache"]["items"]["max_items"] == 5
    assert result["params"]["warmup_s"] == 3
    assert "base.toml" in result["description"]


# --- exit 2: a trace that cannot be replayed as written ---------------------------------------------------------------
def _exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("mw-sim: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_truncated_binary_trace_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "cut.bin"
    write_oracle_general(trace, skewed(50))
    trace.write_bytes(trace.read_bytes()[:-7])
    err = _exit_2(["replay", str(trace), *QUICK, "--out", str(tmp_path / "out")], capsys)
    assert str(trace) in err and "record 49" in err and "truncated: 17 of 24 bytes" in err
    assert not (tmp_path / "out" / "result.json").exists()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("time,key\n0,a\n1\n", "line 3: 1 fields"),
        ("0,a,10\n1,b\n", "line 2: 2 fields in '1,b', the first row has 3"),
        ("0,a\nsoon,b\n", "line 2: time 'soon' is not a number"),
        ("0,a\ninf,b\n", "line 2: time 'inf' is not finite"),
        ("0,a,10\n1,b,-3\n", "line 2: size '-3' is not a whole number of bytes"),
        ("0,a\n5,b\n4,c\n", "line 3: time 4 is before the previous request's 5"),
        ("0,a\n1,global:x\n", "line 2: key 'global:x' cannot be an item id"),
        ("0,a\n1, \n", "line 2: key '' cannot be an item id"),
        ("time,key\n", "holds no request"),
    ],
)
def test_bad_csv_row_exits_2_naming_line_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, expected: str
) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text(body)
    err = _exit_2(["replay", str(trace), *QUICK, "--out", str(tmp_path / "out")], capsys)
    assert f"trace {trace}: " in err and expected in err


def test_unreadable_or_unnamed_traces_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path / "out")]
    assert "cannot open" in _exit_2(["replay", str(tmp_path / "none.csv"), *QUICK, *out], capsys)
    odd = tmp_path / "trace.dat"
    odd.write_bytes(b"")
    assert "give --format" in _exit_2(["replay", str(odd), *QUICK, *out], capsys)
    (tmp_path / "t.oracleGeneral.zst").write_bytes(b"\x28\xb5\x2f\xfd")
    assert "decompress" in _exit_2(["replay", str(tmp_path / "t.oracleGeneral.zst"), *QUICK, *out], capsys)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"0,caf\xe9\n")
    assert "not UTF-8" in _exit_2(["replay", str(latin), *QUICK, *out], capsys)
    assert "--agents 0" in _exit_2(["replay", str(latin), "--agents", "0", *out], capsys)


def test_a_workload_needs_the_simpy_engine() -> None:
    from simulations.backends import Backend
    from simulations.replay import TraceIndex, TraceReplay
    from simulations.runner import run_scenario
    from simulations.scenario import Scenario

    scenario = Scenario(name="x")
    with pytest.raises(ValueError, match="SimPy engine only"):
        run_scenario(
            scenario,
            Backend("embedded"),
            run=lambda *a: {},
            workload=TraceReplay(TraceIndex(Path("t"), "csv"), scenario),
        )


# --- readers ----------------------------------------------------------------------------------------------------------
def _sorted_times(times: list[float]) -> list[float]:
    return sorted(times)


oracle_records = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)), max_size=60
)


@settings(max_examples=60, deadline=None, database=None)
@given(records=oracle_records)
def test_oracle_general_round_trip(
    tmp_path_factory: pytest.TempPathFactory, records: list[tuple[int, int, int]]
) -> None:
    times = sorted(t for t, _, _ in records)
    requests = [Request(float(t), str(obj), size) for t, (_, obj, size) in zip(times, records, strict=True)]
    path = tmp_path_factory.mktemp("og") / "t.bin"
    assert write_oracle_general(path, requests) == len(requests)
    assert path.stat().st_size == 24 * len(requests)
    assert list(read_oracle_general(path)) == requests


def test_oracle_general_layout_and_next_access() -> None:
    assert ORACLE_GENERAL.size == 24
    # libCacheSim's record: uint32 time, uint64 id, uint32 size, int64 next access (index of the next request, -1).
    assert ORACLE_GENERAL.pack(1, 2, 3, -1) == struct.pack("<I", 1) + struct.pack("<Q", 2) + struct.pack("<I", 3) + (
        b"\xff" * 8
    )


def test_oracle_general_writes_next_access(tmp_path: Path) -> None:
    path = tmp_path / "t.bin"
    write_oracle_general(path, [Request(0, "5", 1), Request(0, "6", 1), Request(1, "5", 1)])
    assert [r[3] for r in ORACLE_GENERAL.iter_unpack(path.read_bytes())] == [2, -1, -1]


keys = st.text(
    st.characters(categories=("L", "N", "P", "S"), max_codepoint=0x2FF, exclude_characters=',"'),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None, database=None)
@given(
    rows=st.lists(
        st.tuples(st.floats(-1e9, 1e9, allow_nan=False), keys, st.integers(0, 2**40)), min_size=1, max_size=40
    ),
    sized=st.booleans(),
    header=st.booleans(),
)
def test_csv_round_trip(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[float, str, int]], sized: bool, header: bool
) -> None:
    rows = [r for r in rows if not r[1].startswith(("global:", "mw:", "organ:"))] or [(0.0, "k", 1)]
    times = sorted(t for t, _, _ in rows)
    requests = [Request(t, key, size if sized else None) for t, (_, key, size) in zip(times, rows, strict=True)]
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    write_csv(path, requests, header=header)
    assert list(read_csv(path)) == requests


def test_a_truncated_record_names_its_index_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "t.bin"
    write_oracle_general(path, [Request(0, "1", 1)] * 3)
    path.write_bytes(path.read_bytes() + b"\x00" * 5)
    reader = read_oracle_general(path)
    assert len([next(reader) for _ in range(3)]) == 3
    with pytest.raises(TraceError, match=r"record 3: truncated: 5 of 24 bytes at offset 72"):
        next(reader)


def test_binary_time_going_backwards_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.bin"
    path.write_bytes(ORACLE_GENERAL.pack(10, 1, 1, -1) + ORACLE_GENERAL.pack(9, 2, 1, -1))
    with pytest.raises(TraceError, match=r"record 1: time 9 is before the previous request's 10"):
        list(read_oracle_general(path))


def test_format_from_the_name() -> None:
    assert guess_format(Path("a.csv")) == "csv"
    assert guess_format(Path("w.oracleGeneral")) == "oracle-general"
    assert guess_format(Path("w.bin")) == "oracle-general"
    assert guess_format(Path("w.dat"), "csv") == "csv"
    with pytest.raises(TraceError, match="give --format"):
        guess_format(Path("w.dat"))


# --- the single-cache comparison --------------------------------------------------------------------------------------
def hits(cache: LRU, keys: list[Hashable]) -> list[bool]:
    return [cache.access(k) for k in keys]


def test_lru_by_hand() -> None:
    assert hits(LRU(2), list("abacba")) == [False, False, True, False, False, False]
    assert hits(LRU(3), list("abacba")) == [False, False, True, False, True, True]
    # Bytes: 10 bytes; a(6) b(3) fit, c(4) evicts a, b hits, a(6) evicts c only (b is younger), b hits.
    lru = LRU(100, 10)
    assert [lru.access(k, n) for k, n in [("a", 6), ("b", 3), ("c", 4), ("b", 3), ("a", 6), ("b", 3)]] == [
        False,
        False,
        False,
        True,
        False,
        True,
    ]
    assert lru.keys() == ["a", "b"] and lru.nbytes == 9
    assert LRU(10, 5).access("big", 6) is False and len(LRU(10, 5)) == 0


@settings(max_examples=40, deadline=None, database=None)
@given(keys=st.lists(st.integers(0, 10), max_size=200), size=st.integers(1, 6))
def test_lru_is_cachetools_lru(keys: list[int], size: int) -> None:
    ours = LRU(size)
    theirs: cachetools.LRUCache[int, bool] = cachetools.LRUCache(size)
    for k in keys:
        hit = k in theirs
        if hit:
            theirs[k]
        else:
            theirs[k] = True
        assert ours.access(k) == hit


def test_single_caches_tell_the_policies_apart() -> None:
    # A hot set of 8 re-read between scans of one-hit wonders: LRU lets the scans flush it, S3-FIFO keeps it in main.
    caches = SingleCaches(20, None, sized=False)
    scan = 0
    for _ in range(40):
        for hot in range(8):
            caches.access(f"hot{hot}", None)
        for _ in range(30):
            caches.access(f"once{scan}", None)
            scan += 1
    summary = caches.summary()
    assert summary["items"]["lru"]["hits"] == 0
    assert summary["items"]["s3fifo"]["hit_ratio"] > 0.15
    assert summary["items"]["s3fifo_minus_lru"] == summary["items"]["s3fifo"]["hit_ratio"]
    assert "bytes" not in summary


def test_figures_match_libcachesim_on_the_written_trace(tmp_path: Path) -> None:
    lcs = pytest.importorskip("libcachesim")
    path = tmp_path / "t.oracleGeneral.bin"
    requests = [Request(float(i), r.key, 1) for i, r in enumerate(skewed(5000, objects=400, seed=3))]
    write_oracle_general(path, requests)
    caches = SingleCaches(50, None, sized=False)
    for r in read_oracle_general(path):
        caches.access(r.key, r.size)
    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
    miss_ratio, _ = lcs.LRU(50).process_trace(reader)
    assert caches.summary()["items"]["lru"]["hit_ratio"] == pytest.approx(1 - miss_ratio, abs=1e-6)


def test_an_object_keeps_its_first_size(tmp_path: Path) -> None:
    # 10 bytes: a b c of 4 each, c evicts a; a is asked again at 9 bytes but Mlt (and the comparison) hold its 4:
    # a evicts b only, and c still hits. Charged 9, a would have evicted c too.
    from simulations.replay import index_trace

    trace = tmp_path / "resized.csv"
    trace.write_text("0,a,4\n1,b,4\n2,c,4\n3,a,9\n4,c,4\n")
    index = index_trace(trace, "csv", max_items=10, max_bytes=10)
    assert index.sizes == {"a": 4, "b": 4, "c": 4}
    assert index.single_cache["bytes"]["lru"]["hits"] == 1
    assert index.single_cache["bytes"]["lru"]["byte_hit_ratio"] == round(4 / 20, 6)


def test_a_wrong_backend_is_named_before_the_trace_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The index pass over a large trace takes minutes: a flag the backend refuses must not wait for it.
    missing = str(tmp_path / "none.csv")
    err = _exit_2(["replay", missing, *QUICK, "--redis-url", "redis://x:pw@h/0", "--out", str(tmp_path)], capsys)
    assert "--redis-url: only with --backend redis" in err and "pw" not in err


def test_replay_judges_every_answer_and_a_wrong_cached_copy_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = skewed(600)
    trace = tmp_path / "trace.csv"
    write_csv(trace, requests)
    code, result = replay(tmp_path, trace, "--no-baseline", out="clean")
    assert code == EXIT_PASS
    stale = result["runs"]["cached"]["stale"]
    assert stale["checked"]["item"] == len(requests), "every answer of the replay is judged"
    # A copy of a version Mlt never held, put in the shared tiers through the runtime's own write: every reader of it
    # is served a value that never existed.
    from simulations.replay import TraceReplay

    seed = TraceReplay.seed

    def poisoned(self: TraceReplay, model: Any) -> None:
        seed(self, model)
        model.admin.set_global_item_typed(self.kind, self.scope, "1", "9|never written")

    monkeypatch.setattr(TraceReplay, "seed", poisoned)
    code, result = replay(tmp_path, trace, "--no-baseline", out="poisoned")
    rows = {c["name"]: c for c in result["verdict"]["checks"]}
    assert code == EXIT_FAIL and not rows["no_stale_reads"]["passed"]
    assert [c["name"] for c in result["verdict"]["checks"] if not c["passed"]] == ["no_stale_reads"]


def test_the_synthetic_trace_is_seeded_skewed_and_replayable(tmp_path: Path) -> None:
    from simulations.synthetic_trace import main as make_trace
    from simulations.synthetic_trace import synthetic_requests

    first = list(synthetic_requests(3000, 500, seed=3))
    assert first == list(synthetic_requests(3000, 500, seed=3))
    assert first != list(synthetic_requests(3000, 500, seed=4))
    counts: dict[str, int] = {}
    for r in first:
        counts[r.key] = counts.get(r.key, 0) + 1
    top = sorted(counts.values(), reverse=True)
    assert sum(top[:50]) > len(first) / 3, "Zipf: a tenth of the objects take a third of the requests"
    assert all(a.time <= b.time for a, b in itertools.pairwise(first))
    trace = tmp_path / "t.oracleGeneral.bin"
    assert make_trace([str(trace), "--requests", "3000", "--objects", "500", "--seed", "3"]) == 0
    assert [(r.key, r.size) for r in read_oracle_general(trace)] == [(r.key, r.size) for r in first]
