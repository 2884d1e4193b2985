"""One process-started Redis and PostgreSQL shared by the plugin's own tests (each started once per session)."""

from pytest_mw.servers import factories

redis_proc_server = factories.redis_proc()
postgres_proc_server = factories.postgres_proc()
