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


@pytest.fixture(autouse=True)
def _nested_runs_without_asyncio(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nested runs write no ini, so pytest-asyncio (the test extra has it) would warn that its loop scope is unset in
    each of them; only the asyncio setup tests load it, with the ini they write. Set after pytester's own set-up,
    which clears ``PYTEST_ADDOPTS``."""
    if "pytester" not in request.fixturenames or request.node.module.__name__.endswith("test_asyncio_setup"):
        return
    request.getfixturevalue("pytester")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:asyncio")
