"""A cluster node in a container: the ``--mw-server-provider container`` twin of :class:`RedisNodeProcess`.

Each node is a ``redis:7`` container on the host's network (``network_mode="host"``): a Redis Cluster announces its
nodes' addresses to clients and to each other, so a node must be reachable at the address it sees for itself, which
published ports (one address inside, another outside) would break. Its directory is mounted at the same path, so the
node's arguments, its ``nodes.conf`` and its log are those a process node has. A crash is the engine's kill, a
rejoin a new container with the same arguments on the same port (empty: nothing is persisted).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_mw.servers.errors import ServerUnavailable
from pytest_mw.servers.ports import free_port
from pytest_mw.servers.readiness import wait_until_ready

if TYPE_CHECKING:
    import redis

DEFAULT_IMAGE = "redis:7"


class RedisNodeContainer:
    """One ``redis-server`` in a container on the host network, started with ``argv(port)`` (the same interface as
    :class:`pytest_mw.servers.redis_cluster.RedisNodeProcess`: ``start``, ``kill``, ``restart``, ``stop``)."""

    provider = "container"

    def __init__(
        self,
        image: str,
        host: str,
        directory: Path,
        argv: Callable[[int], list[str]],
        startup_timeout: float = 30.0,
    ) -> None:
        self.image = image
        self.host = host
        self.directory = directory
        self._argv = argv
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.args: list[str] = []
        self._container: Any = None

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    @property
    def address(self) -> tuple[str, int]:
        if self.port is None:
            raise RuntimeError("the node is not started")
        return self.host, self.port

    def _state(self) -> dict[str, Any]:
        wrapped = self._container.get_wrapped_container()
        wrapped.reload()
        return dict(wrapped.attrs.get("State") or {})

    @property
    def pid(self) -> int:
        """The container's main process as the host sees it."""
        if self._container is None:
            raise RuntimeError("the node is not running")
        return int(self._state().get("Pid") or 0)

    @property
    def alive(self) -> bool:
        if self._container is None:
            return False
        try:
            return bool(self._state().get("Running"))
        except Exception:  # the engine no longer knows it: not running
            return False

    def client(self, timeout: float = 5.0) -> redis.Redis:
        from pytest_mw.servers.redis_cluster import redis_client

        host, port = self.address
        return redis_client(host, port, timeout)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        failure = ""
        for _ in range(3):
            port = free_port(self.host)
            failure = self._launch(self._argv(port), port)
            if not failure:
                return
        raise ServerUnavailable(f"redis container did not start in {self.directory}: {failure}")

    def restart(self) -> None:
        if self.alive:
            raise RuntimeError(f"node {self.port} is running")
        if self.port is None or not self.args:
            raise RuntimeError("the node was never started")
        failure = self._launch(self.args, self.port)
        if failure:
            raise ServerUnavailable(f"redis container did not restart on {self.port}: {failure}")

    def _launch(self, args: list[str], port: int) -> str:
        try:
            from testcontainers.core.container import DockerContainer
        except ImportError as exc:
            return f"testcontainers is not installed: {exc}"
        self._remove()
        self.args, self.port = args, port
        container = (
            DockerContainer(self.image)
            .with_command(["redis-server", *args])
            .with_volume_mapping(str(self.directory), str(self.directory), "rw")
            .with_kwargs(network_mode="host")
        )
        try:
            container.start()
        except Exception as exc:  # no engine, no image: the provider is unavailable
            return f"{type(exc).__name__}: {exc}"
        self._container = container

        def ping() -> None:
            with self.client(timeout=1.0) as client:
                client.ping()

        try:
            wait_until_ready(ping, self.startup_timeout, lambda: self.alive)
        except Exception as exc:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-3:] if self.log.exists() else []
            self.kill()
            return f"{exc}; log: {' | '.join(tail) or '(empty)'}"
        return ""

    def kill(self) -> None:
        """The engine's kill (SIGKILL of the container's process): a crash."""
        if self._container is not None and self.alive:
            with contextlib.suppress(Exception):
                self._container.get_wrapped_container().kill()

    def _remove(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.stop()
            self._container = None

    def stop(self) -> None:
        self._remove()
