"""Redis and PostgreSQL in containers through testcontainers (imported only when a container is asked for).

A missing engine surfaces as ``docker.errors.DockerException`` from the container constructor within milliseconds; it
and any other failure to start become ``ServerUnavailable`` so ``auto`` can fall back and the plugin can skip.
"""

from __future__ import annotations

import contextlib
import gc
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from pytest_mw.servers.errors import ServerUnavailable
from pytest_mw.servers.spec import Kind, ProviderName, ServerSpec

DEFAULT_REDIS_IMAGE = "redis:7"
DEFAULT_POSTGRES_IMAGE = "postgres:15"

_INSTALL_HINT = "testcontainers is not installed (pip install 'pytest-mw[containers]')"


def _container_class(kind: Kind) -> type[Any]:
    """The testcontainers class: ``testcontainers.community.*`` (4.x), else the old top-level module."""
    try:
        if kind == "redis":
            from testcontainers.community.redis import RedisContainer

            return RedisContainer
        from testcontainers.community.postgres import PostgresContainer

        return PostgresContainer
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if kind == "redis":
                from testcontainers.redis import RedisContainer as OldRedisContainer

                return OldRedisContainer
            from testcontainers.postgres import PostgresContainer as OldPostgresContainer

            return OldPostgresContainer
    except ImportError as exc:
        raise ServerUnavailable(f"{_INSTALL_HINT}: {exc}") from exc


def _collect_leaked_sockets() -> None:
    """docker-py leaks the socket of its failed version probe; collect it now, quietly, not in a later test.

    Left to the garbage collector it surfaces as a ResourceWarning in whichever test runs next, which pytest reports
    as an unraisable-exception error under ``-W error`` or ``-X dev``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


class _ContainerServer(ABC):
    """Shared start/stop: construct (engine check), start (pull/run/wait), and always remove on failure."""

    kind: Kind
    provider: ProviderName = "container"
    port: int

    def __init__(self, image: str) -> None:
        self.image = image
        self._container: Any = None
        self._killed_url: str | None = None

    @property
    def label(self) -> str:
        return f"container {self.image}"

    @abstractmethod
    def _construct(self, cls: type[Any]) -> Any: ...

    @abstractmethod
    def _url(self, host: str, port: int) -> str: ...

    def _construct_or_explain(self, cls: type[Any]) -> Any:
        """Construct the container; the constructor is where a missing engine shows (within milliseconds)."""
        try:
            return self._construct(cls)
        except Exception as exc:
            reason = str(exc)
        _collect_leaked_sockets()
        raise ServerUnavailable(f"no container engine answers ({reason}); start one or set DOCKER_HOST")

    def start(self) -> ServerSpec:
        container = self._construct_or_explain(_container_class(self.kind))
        try:
            container.start()
            url = self._url(container.get_container_host_ip(), int(container.get_exposed_port(self.port)))
        except Exception as exc:
            with contextlib.suppress(Exception):
                container.stop()
            raise ServerUnavailable(f"container {self.image} did not start ({exc})") from exc
        self._container = container
        return ServerSpec(self.kind, url, "container", f"image {self.image}")

    @property
    def url(self) -> str:
        """The server's URL (DSN) now: the engine host and the port it publishes."""
        if self._container is None:
            raise RuntimeError(f"container {self.image} is not started")
        return self._url(self._container.get_container_host_ip(), int(self._container.get_exposed_port(self.port)))

    def _kill(self, before: Callable[[], None] = lambda: None) -> None:
        """SIGKILL the container (every process in it at once, as a crash) and wait until the engine saw it exit.
        ``before`` runs first; the URL is remembered before it, so a restart after a failed kill is still allowed."""
        self._killed_url = self.url
        before()
        container = self._engine_container()
        container.kill()
        container.wait()

    def _start_again(self, probe: Callable[[str], None]) -> None:
        """Start the killed container: on the same published address (else ``ServerUnavailable``), ready when
        ``probe`` passes; until then a retry is allowed."""
        from pytest_mw.servers.readiness import wait_until_ready

        url = self._killed_url
        if url is None:
            raise RuntimeError(f"{type(self).__name__}.restart follows kill()")
        self._engine_container().start()
        if self.url != url:  # host and port only: a DSN carries a password
            was, now = urlsplit(url), urlsplit(self.url)
            raise ServerUnavailable(
                f"container {self.image} came back on {now.hostname}:{now.port}, not {was.hostname}:{was.port}"
            )
        wait_until_ready(lambda: probe(url), 30.0)
        self._killed_url = None

    def _engine_container(self) -> Any:
        if self._container is None:
            raise RuntimeError(f"container {self.image} is not started")
        return self._container.get_wrapped_container()

    @property
    def status(self) -> str:
        """The engine's state of the container (``running``, ``paused``, ...), asked afresh."""
        container = self._engine_container()
        container.reload()
        return str(container.status)

    def pause(self) -> None:
        """Freeze every process of the container (the engine's pause): connections stay open and stop answering."""
        self._engine_container().pause()

    def resume(self) -> None:
        """Unfreeze after :meth:`pause`."""
        self._engine_container().unpause()

    def stop(self) -> None:
        """Stop and remove the container (testcontainers removes it with its volumes); a paused one is resumed first."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                if self.status == "paused":
                    self.resume()
            container, self._container = self._container, None
            container.stop()


class RedisContainerServer(_ContainerServer):
    """``redis:7`` (or ``image``) with its port published on the engine host."""

    kind: Kind = "redis"
    port = 6379

    def __init__(self, image: str = DEFAULT_REDIS_IMAGE) -> None:
        super().__init__(image)

    def _construct(self, cls: type[Any]) -> Any:
        return cls(self.image, port=self.port)

    def _url(self, host: str, port: int) -> str:
        return f"redis://{host}:{port}/0"

    def kill(self) -> None:
        """SIGKILL the container's Redis; :meth:`restart` brings it back empty. The image's Redis snapshots to disk
        (``save 3600 1 ...``), and a restart would load its last snapshot: snapshots are turned off and the dump
        removed first, so the data is lost as with the throwaway process (persistence off)."""
        import redis

        def forget_snapshots() -> None:
            with redis.Redis.from_url(self.url, socket_timeout=2.0) as client:
                client.config_set("save", "")
                directory = client.config_get("dir")["dir"]
            self._engine_container().exec_run(["rm", "-f", f"{directory.rstrip('/')}/dump.rdb"])

        self._kill(forget_snapshots)

    def restart(self) -> None:
        """Start the killed container again: the same published port (else ``ServerUnavailable``), an empty Redis."""
        from pytest_mw.servers.readiness import redis_ping

        self._start_again(lambda url: redis_ping(url, 1.0))


class PostgresContainerServer(_ContainerServer):
    """``postgres:15`` (or ``image``); the DSN is a plain ``postgresql://`` one (no ``+psycopg2``) for psycopg 3."""

    kind: Kind = "postgres"
    port = 5432

    def __init__(
        self,
        image: str = DEFAULT_POSTGRES_IMAGE,
        username: str = "postgres",
        password: str = "postgres",
        dbname: str = "postgres",
    ) -> None:
        super().__init__(image)
        self.username = username
        self.password = password
        self.dbname = dbname

    def _construct(self, cls: type[Any]) -> Any:
        return cls(
            self.image,
            port=self.port,
            username=self.username,
            password=self.password,
            dbname=self.dbname,
            driver=None,
        )

    def _url(self, host: str, port: int) -> str:
        user, password = quote(self.username, safe=""), quote(self.password, safe="")
        return f"postgresql://{user}:{password}@{host}:{port}/{quote(self.dbname, safe='')}"

    def kill(self) -> None:
        """SIGKILL the container (its postmaster and every backend at once, as a crash): open connections break and
        new ones are refused until :meth:`restart`. A ``CHECKPOINT`` first puts every committed row in the data
        files, as :meth:`PostgresProcess.kill <pytest_mw.servers.postgres_proc.PostgresProcess.kill>` does, so the
        kill loses nothing committed whatever the image's durability settings."""
        import psycopg

        def checkpoint() -> None:
            with psycopg.connect(self.url, connect_timeout=2, autocommit=True) as conn:
                conn.execute("CHECKPOINT")

        self._kill(checkpoint)

    def restart(self) -> None:
        """Start the killed container again, on the same published port (else ``ServerUnavailable``): its data
        directory is the container's own, so crash recovery brings every committed row back."""
        from pytest_mw.servers.readiness import postgres_ping

        self._start_again(postgres_ping)
