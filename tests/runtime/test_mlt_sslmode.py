"""PostgreSQL's ``sslmode`` passes through ``MW_MLT_DSN`` to libpq untouched: the test servers run without SSL, so
``sslmode=disable`` connects and ``sslmode=require`` is refused by libpq itself (an MltUnavailable, never a silent
fall back to plain text)."""

from __future__ import annotations

import pytest

import mw
from mw import MwConfig, MwManager
from mw.errors import MltUnavailable

pytestmark = pytest.mark.mw_real_servers


def with_sslmode(dsn: str, mode: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}sslmode={mode}"


def test_sslmode_disable_connects(mw_postgres_dsn: str) -> None:
    m = MwManager("a", MwConfig.from_env({"MW_MLT_DSN": with_sslmode(str(mw_postgres_dsn), "disable")}))
    try:
        m.mlt.put_item("doc", "s", "1", "v")
        assert m.get_item_typed("doc", "s", "1") == "v"
    finally:
        m.close()
        mw.close_all()


def test_sslmode_require_reaches_libpq(mw_postgres_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    config = MwConfig.from_env({"MW_MLT_DSN": with_sslmode(str(mw_postgres_dsn), "require")}, mlt_timeout_s=2.0)
    m = MwManager("a", config)
    try:
        with pytest.raises(MltUnavailable, match="no connection"):
            m.mlt.put_item("doc", "s", "1", "v")
        assert "SSL was required" in caplog.text, "libpq saw sslmode=require (the pool logs why it failed)"
    finally:
        m.close()
        mw.close_all()
