"""One process-started Redis and PostgreSQL shared by the plugin's own tests (each started once per session)."""

import pytest

from pytest_mw.servers import factories

redis_proc_server = factories.redis_proc()
postgres_proc_server = factories.postgres_proc()


@pytest.fixture(autouse=True)
def _no_outer_matrix_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CI matrix may export MW_TEST_BACKEND / MW_TEST_SERVER_PROVIDER; nested pytester runs must not inherit them."""
    monkeypatch.delenv("MW_TEST_BACKEND", raising=False)
    monkeypatch.delenv("MW_TEST_SERVER_PROVIDER", raising=False)
