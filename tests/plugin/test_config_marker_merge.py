"""``@pytest.mark.mw_config(task_ttls_s={...})`` changes the statuses it names and keeps the others."""

from __future__ import annotations

import pytest
from plugin_nested import run

from mw import MwConfig
from mw.config import DEFAULT_TASK_TTLS_S
from mw.errors import ConfigError


def test_a_partial_task_ttl_marker_merges_with_the_defaults(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest
from pytest_mw import assert_task_ttl

@pytest.mark.mw_config(task_ttls_s={"running": 3}, ttl_jitter=0)
def test_running(mw, mw_config):
    assert mw_config.task_ttls_s["running"] == 3
    assert mw_config.task_ttls_s["completed"] == 600
    row = {"id": 1, "status": "running"}
    assert mw.cache_task_row(row) == 3
    assert_task_ttl(mw, row, tiers=("L1", "L0", "envelope"))
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)


def test_markers_on_a_class_and_a_test_merge_status_by_status(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mw_config(task_ttls_s={"running": 3, "queued": 4})
class TestBoard:
    @pytest.mark.mw_config(task_ttls_s={"queued": 5})
    def test_both(self, mw_config):
        assert mw_config.task_ttls_s["running"] == 3, "the class marker's status stays"
        assert mw_config.task_ttls_s["queued"] == 5, "the closer marker wins for the status it names"
        assert mw_config.task_ttls_s["completed"] == 600
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)


def test_a_misspelt_status_in_the_marker_is_an_error_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.mw_config(task_ttls_s={"runing": 3})
def test_typo(mw):
    pass
"""
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ConfigError: MW_TASK_TTL_RUNING_S=3: no task status 'runing'*"])


@pytest.mark.new_api
def test_replace_and_from_env_merge_partial_tables() -> None:
    base = MwConfig.from_env({"MW_TASK_TTL_FAILED_S": "7"}, task_ttls_s={"running": 3})
    assert dict(base.task_ttls_s) == {**DEFAULT_TASK_TTLS_S, "failed": 7.0, "running": 3}
    changed = base.with_task_ttls(queued=0)
    assert dict(changed.task_ttls_s) == {**DEFAULT_TASK_TTLS_S, "failed": 7.0, "running": 3, "queued": 0}
    assert base.replace(task_ttls_s={"RUNNING": 4}).task_ttls_s["running"] == 4
    with pytest.raises(ConfigError, match="expected a mapping"):
        base.replace(task_ttls_s=[("running", 3)])
    with pytest.raises(ConfigError, match="MW_TASK_TTL_RUNNING_S"):
        base.with_task_ttls(running=-1)
