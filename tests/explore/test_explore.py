"""The explorer in CI: thousands of seeds hold every invariant, each defect put back is found, the model
answers as a real Redis does.

``MW_EXPLORE_SEEDS`` changes the CI budget (default 8,000 seeds; the suite's budget is 3 minutes on a
loaded machine); ``tools/explore`` runs longer.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import redis

from .crosscheck import replay
from .model import ModelRedis
from .mutations import FOUND_ELSEWHERE, MUTATIONS
from .run import explore
from .scheduler import quiet, run_seed, scenario

SEEDS = int(os.environ.get("MW_EXPLORE_SEEDS", "8000"))
MUTATION_SEARCH = 3000
"""Seeds a mutation may take to be found (each is found in the first few hundred)."""


def test_every_invariant_holds_on_thousands_of_seeds() -> None:
    assert SEEDS >= 2000, "the CI budget is at least 2,000 seeds"
    figures = explore(range(SEEDS))
    print("\n" + figures.summary())
    reports = "\n\n".join(r.report() for r in figures.failures[:3])
    assert figures.violations == 0, reports
    assert figures.seeds == SEEDS and figures.faults > 0 and figures.loads > 0
    assert {("acquire", "recheck"), ("recheck", "load"), ("wait", "wait"), ("join", "acquire")} <= set(
        figures.transitions
    ), "the seeds reach the lease, the check-after-lock and the waits"


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_the_explorer_finds_each_defect_put_back(name: str) -> None:
    with MUTATIONS[name]():
        figures = explore(range(MUTATION_SEARCH), stop_at_first=True)
    assert figures.failures, f"{name}: no seed in {MUTATION_SEARCH} fails with the defect back"
    first = figures.failures[0]
    print(f"\n{name}: first failing seed {first.seed}: {first.violations[0]}")


def test_defects_outside_the_model_name_the_test_that_finds_them() -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for defect, where in FOUND_ELSEWHERE.items():
        path, _, test = where.partition("::")
        with open(os.path.join(root, path), encoding="utf-8") as f:
            assert f"def {test}(" in f.read(), f"{defect}: {where} does not exist"


def test_a_seed_replays_exactly_and_a_failing_one_prints_its_schedule() -> None:
    with quiet():
        a, b = run_seed(93, verbose=True), run_seed(93, verbose=True)
    assert [(e.client, e.command) for e in a.log] == [(e.client, e.command) for e in b.log]
    assert a.events == b.events and [str(v) for v in a.violations] == [str(v) for v in b.violations]
    with MUTATIONS["no check-after-lock"]():
        figures = explore(range(MUTATION_SEARCH), stop_at_first=True)
    report = figures.failures[0].report()
    seed = figures.failures[0].seed
    assert f"seed {seed} failed" in report and "double load" in report
    assert all(str(op) in report for op in scenario(seed).ops), "the report lists every step of the schedule"
    assert f"tools/explore --seed {seed}" in report


def _sample() -> list[Any]:
    with quiet():
        return [run_seed(seed) for seed in range(0, 4000, 400)]


@pytest.mark.mw_real_servers
def test_the_model_answers_as_a_real_redis_does(
    mw_redis_url: str, mw_namespace: str, request: pytest.FixtureRequest
) -> None:
    client = redis.Redis.from_url(mw_redis_url)  # a real server, whatever --mw-backend says
    request.addfinalizer(client.close)
    compared = skipped = 0
    sample = _sample()
    for result in sample:
        check = replay(result.log, client, f"{mw_namespace}:s{result.seed}:", scale=0.05)
        assert not check.mismatches, f"seed {result.seed}:\n" + "\n".join(check.mismatches[:10])
        compared += check.compared
        skipped += check.skipped
    print(f"\ncross-check: {len(sample)} schedules, {compared} answers compared, {skipped} near an expiry skipped")
    # Not vacuous: most answers are compared. How many are skipped depends on how late a busy machine sends them
    # (a quiet run skips about 1 %, a load of 8 on 2 cores up to 20 %), so the floor is a majority, not a ratio.
    assert compared > skipped


@pytest.mark.mw_real_servers
def test_the_cross_check_catches_a_model_that_ignores_nx(
    mw_redis_url: str, mw_namespace: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    original = ModelRedis._run

    def lax(self: ModelRedis, who: str, command: str, args: tuple[Any, ...]) -> Any:
        if command == "set":
            args = (*args[:3], False)
        return original(self, who, command, args)

    monkeypatch.setattr(ModelRedis, "_run", lax)
    sample = _sample()
    monkeypatch.undo()
    client = redis.Redis.from_url(mw_redis_url)
    request.addfinalizer(client.close)
    found = [replay(r.log, client, f"{mw_namespace}:s{r.seed}:", scale=0.05).mismatches for r in sample]
    assert any(found), "a model that lets every SET NX succeed answered as Redis does"
