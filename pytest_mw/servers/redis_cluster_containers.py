"""A cluster node in a container: the runner of :class:`~pytest_mw.servers.redis_cluster.RedisNodeProcess` that
``--mw-server-provider container`` gives a Redis Cluster's nodes.

Each node is a ``redis:7`` container on the host's network (``network_mode="host"``): a Redis Cluster announces its
nodes' addresses to clients and to each other, so a node must be reachable at the address it sees for itself, which
published ports (one address inside, another outside) would break. Its directory is mounted at the same path, so the
node's arguments, its ``nodes.conf`` and its log are those a process node has. A crash is the engine's kill, a
rejoin a new container with the same arguments on the same port (empty: nothing is persisted).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

DEFAULT_IMAGE = "redis:7"


class ContainerRunner:
    """``redis-server`` in a container of ``image`` on the host network (a ``NodeRunner``)."""

    what = "redis container"

    def __init__(self, image: str = DEFAULT_IMAGE) -> None:
        self.image = image
        self._container: Any = None

    def launch(self, args: list[str], directory: Path) -> None:
        from testcontainers.core.container import DockerContainer

        container = (
            DockerContainer(self.image)
            .with_command(["redis-server", *args])
            .with_volume_mapping(str(directory), str(directory), "rw")
            .with_kwargs(network_mode="host")
        )
        container.start()
        self._container = container

    def _state(self) -> dict[str, Any]:
        wrapped = self._container.get_wrapped_container()
        wrapped.reload()
        return dict(wrapped.attrs.get("State") or {})

    @property
    def alive(self) -> bool:
        if self._container is None:
            return False
        try:
            return bool(self._state().get("Running"))
        except Exception:  # the engine no longer knows it: not running
            return False

    @property
    def pid(self) -> int:
        """The container's main process as the host sees it."""
        if self._container is None:
            raise RuntimeError("the node is not running")
        return int(self._state().get("Pid") or 0)

    def kill(self) -> None:
        """The engine's kill (SIGKILL of the container's process): a crash."""
        if self._container is not None and self.alive:
            with contextlib.suppress(Exception):
                self._container.get_wrapped_container().kill()

    def stop(self) -> None:
        """Remove the container (stopped or not)."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.stop()
            self._container = None
