"""taskboard's tests, written the way a pytest-mw user writes them: fixtures from the plugin, no conftest."""

from __future__ import annotations

import pytest
from taskboard import TaskBoard

from mw import keys as K
from pytest_mw import (
    assert_hit_ratio,
    assert_key_roundtrip,
    assert_memory_metrics,
    assert_task_ttl,
    assert_tier_hits,
    assert_ttl,
)


@pytest.fixture
def board(mw):
    return TaskBoard(mw)


def test_profile_is_shared_between_agents(mw_factory):
    alice = TaskBoard(mw_factory("alice"))
    bob = TaskBoard(mw_factory("bob"))
    alice.publish_profile("alice", {"skills": ["sql"]})
    assert bob.profile("alice") == {"skills": ["sql"]}
    assert_tier_hits(bob.mw, l0=0, l1=1, l2=0)


def test_profile_ttl_and_expiry(board, mw_clock):
    board.publish_profile("a1", {"v": 1})
    assert_ttl(board.mw, ("profile", "agent", "a1"), 300)
    mw_clock.advance(301)
    assert board.profile("a1") is None


@pytest.mark.mw_config(ttl_jitter=0)
def test_running_task_ttl_is_short(board):
    row = {"id": "t-1", "status": "running"}
    assert board.track(row) == 10
    assert_task_ttl(board.mw, row)


def test_completed_task_ttl_allows_for_jitter(board):
    row = {"id": "t-2", "status": "completed"}
    board.track(row)
    assert_task_ttl(board.mw, row)


def test_task_lifecycle_uses_one_key(board, mw_keys):
    board.track({"id": "t-3", "status": "running"})
    assert board.task("t-3")["status"] == "running"
    board.finish("t-3")
    assert board.task("t-3")["status"] == "completed"
    assert_key_roundtrip(mw_keys, K.task_key("t-3"))


@pytest.mark.mw_backend("fakeredis", "redis")
def test_heartbeat_on_both_backends(board, mw_backend):
    board.publish_profile("a1", {"v": 1})
    for _ in range(9):
        board.profile("a1")
    heartbeat = board.heartbeat()
    assert_memory_metrics(heartbeat)
    assert_hit_ratio(heartbeat, at_least=0.7)


def test_private_notes_stay_in_l0(board, mw_keys):
    board.remember("n1", "remember the milk")
    assert mw_keys.keys("write") == ["organ:test-agent:item:n1"]


@pytest.mark.mw_backend("fakeredis", "redis")
def test_profile_is_stored_under_the_test_namespace(board, mw_redis, mw_namespace):
    board.publish_profile("a1", {"v": 1})
    stored = f"{mw_namespace}:{K.global_typed_key('profile', 'agent', 'a1')}"
    assert mw_redis.exists(stored) == 1
    assert 0 < mw_redis.pttl(stored) <= 300_000
