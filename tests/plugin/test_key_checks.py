"""The key recorder and the key-consistency assertions, used directly and through --mw-strict-keys / markers."""

from __future__ import annotations

import pytest
from plugin_nested import run, servers

from mw import MwManager
from mw import keys as K
from pytest_mw import KeyRecorder, assert_key_roundtrip, assert_no_double_prefix, assert_typed_keys_only
from pytest_mw.recorder import KeyRecord
from pytest_mw.servers import ServerSpec

pytestmark = pytest.mark.mw_backend("fakeredis", "redis")


def test_recorder_sees_every_tier_with_the_call_site(mw: MwManager, mw_keys: KeyRecorder) -> None:
    key = K.global_typed_key("doc", "s", "1")
    mw.set_global_item_typed("doc", "s", "1", "v")
    line = test_recorder_sees_every_tier_with_the_call_site.__code__.co_firstlineno + 2
    writes = [e for e in mw_keys.select("write") if e.key == key]
    assert {e.tier for e in writes} == {"L0", "L1", "L2"}
    assert {e.api for e in writes} == {"MwManager.set_global_item_typed"}, "the API user code called"
    assert writes[0].stack[0].function == "test_recorder_sees_every_tier_with_the_call_site"
    assert writes[0].stack[0].lineno == line
    assert f"test_key_checks.py:{line} in test_recorder_sees_every_tier_with_the_call_site (via " in writes[0].site
    mw.clear()
    mw.get_item_typed("doc", "s", "1")
    mw.del_global_item_typed("doc", "s", "1")
    assert key in mw_keys.read and key in mw_keys.deleted
    assert K.lease_key(key) in mw_keys.keys("delete", "lease")
    assert K.negative_key(key) in mw_keys.keys(tier="negative")
    assert_key_roundtrip(mw_keys, key)
    assert_key_roundtrip(mw_keys, "doc:s:1")
    assert_key_roundtrip(mw_keys)
    assert_typed_keys_only(mw_keys)
    assert_no_double_prefix(mw_keys)


def test_task_lifecycle_roundtrip(mw_factory, mw_keys: KeyRecorder) -> None:
    a, b = mw_factory("a"), mw_factory("b", node="n2")
    a.mlt.put_task({"id": 42, "status": "running"})
    a.cache_task_row({"id": 42, "status": "running"})
    assert b.get_task(42)["status"] == "running"
    a.update_task_status(42, "completed")
    assert b.get_task(42)["status"] == "completed"
    assert_key_roundtrip(mw_keys, K.task_key(42))
    assert_typed_keys_only(mw_keys)


def test_recorder_stops_and_clears() -> None:
    recorder = KeyRecorder()
    with recorder:
        from mw import observe

        observe.emit("write", "L0", "global:item:a:b:c")
    observe.emit("write", "L0", "global:item:a:b:d")
    assert [e.key for e in recorder] == ["global:item:a:b:c"] and not recorder.recording
    recorder.clear()
    assert len(recorder) == 0


def _events(*triples: tuple[str, str, str], api: str | None = None) -> list[KeyRecord]:
    return [KeyRecord(op, tier, key, api) for op, tier, key in triples]


def test_checks_on_plain_events() -> None:
    double = _events(("read", "L2", "global:item:global:item:x"))
    with pytest.raises(AssertionError, match="double-prefixed keys"):
        assert_no_double_prefix(double)
    untyped = _events(("write", "L0", "global:item:user42"))
    with pytest.raises(AssertionError, match="outside the typed grammar"):
        assert_typed_keys_only(untyped)
    assert_typed_keys_only(untyped, allow=["global:item:user*"])
    looks_typed = _events(("write", "L2", "global:item:task:by_id:1"), api="ManagerCore.set_global_item")
    with pytest.raises(AssertionError, match="through set_global_item"):
        assert_typed_keys_only(looks_typed)
    internal = _events(("write", "negative", "mw:neg:global:item:x"), ("write", "lease", "mw:lease:global:item:x"))
    assert_typed_keys_only(internal)
    mismatch = _events(("write", "L2", "global:item:task:by_id:7"), ("read", "L2", "global:item:7"))
    with pytest.raises(AssertionError, match="written under one key but read or deleted under another"):
        assert_key_roundtrip(mismatch)
    with pytest.raises(AssertionError, match="did not all touch one key"):
        assert_key_roundtrip(mismatch, "task:by_id:7", ops=("write", "read"))
    assert_key_roundtrip(mismatch, "task:by_id:7", ops=("write",))
    with pytest.raises(AssertionError, match="did not all touch one key"):
        assert_key_roundtrip(_events(("write", "L0", "global:item:a:b:1")), "a:b:1")


KEY_FAILURES = """
from mw import keys as K
from pytest_mw import assert_key_roundtrip, assert_typed_keys_only

def helper(mw):
    mw.set_global_item("user42", {"n": 1})

def test_untyped(mw, mw_keys):
    helper(mw)
    assert_typed_keys_only(mw_keys)

def test_roundtrip(mw, mw_keys):
    mw.set_global_item_typed("task", "by_id", "7", 1)
    mw.get_item("task:7")
    mw.del_global_key("7")
    assert_key_roundtrip(mw_keys, "task:by_id:7")
"""


def test_key_failures_show_keys_call_sites_and_a_diff(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nested_keys=KEY_FAILURES)
    result = run(pytester)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "E*global writes outside the typed grammar global:item:{kind}:{scope}:{id}*",
            "E*write  *global:item:user42",
            "E*at test_nested_keys.py:5 in helper (via MwManager.set_global_item)",
            "E*called from test_nested_keys.py:8 in test_untyped",
            "E*assert ?'global:item:user42'? == ??",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E*write/read/delete of 'task:by_id:7' did not all touch one key:",
            "E*write  *global:item:task:by_id:7",
            "E*read   *global:item:task:7",
            "E*at test_nested_keys.py:13 in test_roundtrip (via MwManager.get_item)",
            "E*delete *global:item:7",
            "E*Differing items:",
        ]
    )


STRICT = """
import pytest

def test_clean(mw):
    mw.set_global_item_typed("doc", "s", "1", "v")
    assert mw.get_item_typed("doc", "s", "1") == "v"
    mw.del_global_item_typed("doc", "s", "1")

def test_untyped(mw):
    mw.set_global_item("user42", 1)

def test_mismatch(mw):
    mw.set_global_item_typed("task", "by_id", "7", 1)
    mw.get_item("7")

@pytest.mark.mw_strict_keys(False)
def test_opted_out(mw):
    mw.set_global_item("user42", 1)

@pytest.mark.mw_strict_keys(allow=["global:item:legacy*"])
def test_allowed(mw):
    mw.set_global_item("legacy-1", 1)

@pytest.mark.mw_strict_keys(typed_only=False)
def test_typed_only_off(mw):
    mw.set_global_item("user42", 1)

def test_fails_itself(mw):
    mw.set_global_item("user42", 1)
    assert False, "the test's own failure comes first"
"""


def test_strict_keys_option_checks_every_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nested_strict=STRICT)
    result = run(pytester, "--mw-strict-keys")
    result.assert_outcomes(passed=4, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*_ test_untyped _*",
            "global writes outside the typed grammar*",
            "  write  *global:item:user42",
            "      at test_nested_strict.py:9 in test_untyped (via MwManager.set_global_item)",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_mismatch _*",
            "an item was written under one key but read or deleted under another*",
            "  write  *global:item:task:by_id:7",
            "  read   *global:item:7",
            "      at test_nested_strict.py:13 in test_mismatch (via MwManager.get_item)",
        ]
    )
    result.stdout.fnmatch_lines(["*_ test_fails_itself _*", "*AssertionError: the test's own failure comes first*"])
    result.stdout.fnmatch_lines(["*- Captured mw checks call -*", "global writes outside the typed grammar*"])


def test_strict_keys_from_ini_marker_and_bad_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nested_strict=STRICT)
    pytester.makeini("[pytest]\nmw_strict_keys = true\n")
    run(pytester).assert_outcomes(passed=4, failed=3)
    pytester.makeini("[pytest]\nmw_strict_keys = false\n")
    run(pytester).assert_outcomes(passed=6, failed=1)
    pytester.makepyfile(
        test_nested_strict="""
import pytest

@pytest.mark.mw_strict_keys
def test_marked(mw):
    mw.set_global_item("user42", 1)

@pytest.mark.mw_strict_keys(colour="red")
def test_bad(mw):
    pass
"""
    )
    result = run(pytester)
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines(["*mw_strict_keys got colour; accepted: enabled, allow, double_prefix*"])


def test_strict_keys_on_a_real_redis(
    pytester: pytest.Pytester, redis_proc_server: ServerSpec, postgres_proc_server: ServerSpec
) -> None:
    pytester.makepyfile(test_nested_strict=STRICT)
    args = ["--mw-strict-keys", "--mw-backend", "redis", *servers(redis_proc_server, postgres_proc_server)]
    run(pytester, *args).assert_outcomes(passed=4, failed=3)


LOGS = """
import logging
import pytest

log = logging.getLogger("app")

def test_clean():
    log.warning("Cached task 1 under global:item:task:by_id:1")

def test_double():
    log.warning("MISS %s", "global:item:global:item:task:1")

@pytest.mark.mw_check_logs(False)
def test_opted_out():
    log.warning("global:item:global:item:x")

def test_debug_is_below_the_level():
    log.debug("global:item:global:item:x")
"""


def test_log_check_option_fails_tests_logging_double_prefixes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nested_logs=LOGS)
    result = run(pytester, "--mw-check-logs")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_double _*",
            "log records contain a double-prefixed key ('global:item:global:item:'):",
            "  WARNING app *test_nested_logs.py:10: MISS global:item:global:item:task:1",
        ]
    )
    result = run(pytester, "--mw-check-logs", "-o", "log_level=DEBUG")
    result.assert_outcomes(passed=2, failed=2)
    run(pytester).assert_outcomes(passed=4)


def test_log_check_marker_ini_and_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_nested_logs="""
import logging
import pytest

@pytest.mark.mw_check_logs
def test_marked():
    logging.getLogger("x").error("global:item:global:item:1")

def test_fixture(mw_log_check):
    logging.getLogger("x").error("global:item:global:item:2")
    assert len(mw_log_check.records) == 1
    assert mw_log_check.messages == ["global:item:global:item:2"]

def test_teardown_logs(request):
    request.addfinalizer(lambda: logging.getLogger("x").error("global:item:global:item:3"))
"""
    )
    result = run(pytester)
    result.assert_outcomes(failed=2, passed=1)
    pytester.makeini("[pytest]\nmw_check_logs = true\n")
    result = run(pytester)
    result.assert_outcomes(failed=2, passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_teardown_logs*", "*global:item:global:item:3*"])
