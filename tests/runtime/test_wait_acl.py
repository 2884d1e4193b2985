"""``WAIT`` (``MW_REDIS_WAIT_REPLICAS``) is in the least-privilege ACL: as that user on the TLS server, which has no
replica, every invalidating change is refused no permission and counts as unconfirmed instead."""

from __future__ import annotations

import pytest

import mw
from mw import MwConfig, MwManager

pytestmark = pytest.mark.mw_real_servers


def test_wait_runs_as_the_least_privilege_user(mw_redis_tls: str, mw_namespace: str) -> None:
    config = MwConfig(redis_url=str(mw_redis_tls), namespace=mw_namespace, mlt_dsn="sqlite://", redis_wait_replicas=1)
    m = MwManager("acl", config)
    try:
        m.set_global_item_typed("doc", "s", "1", "v")
        m.del_global_item_typed("doc", "s", "1")
        assert m.l2.permission_errors == 0, "WAIT was refused: mw.acl.RUNTIME_COMMANDS must list it"
        assert m.l2.unconfirmed >= 2, "no replica: both changes are unconfirmed (and replayed)"
        assert m.get_item_typed("doc", "s", "1") is None
    finally:
        m.close()
        mw.close_all()
