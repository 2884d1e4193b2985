"""A throwaway Sentinel group of local ``redis-server`` processes: a primary, a replica and three sentinels.

The sentinels run as ``redis-server CONF --sentinel`` (no ``redis-sentinel`` binary needed) and declare a silent
primary down after ``down_after_ms``, so a crash is failed over in a few seconds. The group is handed over only once
every sentinel knows the replica and the other sentinels (what a failover needs). Tests get ``failover()``
(``SENTINEL FAILOVER``), ``kill_primary()`` (a real crash) and ``restart()``, each returning once the sentinels agree
on the primary and it accepts writes.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pytest_mw.servers.redis_cluster import (
    FixtureFunction,
    RedisNodeProcess,
    all_or_nothing,
    node_args,
    topology_fixture,
    wait_for,
)
from pytest_mw.servers.redis_proc import find_redis_server
from pytest_mw.servers.spec import Kind, ProviderName, ServerSpec, StartStop

PROBE_KEY = "mw-topology:probe"
"""Written (1 s TTL) to prove a primary accepts writes; outside any ``mw_namespace``, so no test sees it."""


@dataclass(frozen=True)
class DataNode:
    """The primary or the replica, as the node itself reports its role at the time of the call."""

    host: str
    port: int
    role: Literal["primary", "replica", "down"]
    pid: int | None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def _pairs(reply: Any) -> dict[str, str]:
    """A raw ``SENTINEL MASTER``/``REPLICAS`` entry (RESP3 map or RESP2 flat ``[field, value, ...]``) as strings."""
    if isinstance(reply, dict):
        return {str(key): str(value) for key, value in reply.items()}
    items = list(reply)
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}


class RedisSentinelGroup(StartStop):
    """A primary and a replica (local ``redis-server`` processes, no persistence, own temp dir, free ports) watched
    by ``sentinels`` sentinels that agree with ``quorum`` votes, under the name ``master_name``.

    ``url`` is the primary's URL at start; ``sentinels`` lists the sentinels' ``(host, port)`` for
    ``redis.sentinel.Sentinel``, ``sentinel_hosts`` the same as ``host:port,...`` (``MW_REDIS_SENTINELS``). Waits
    are condition-based, up to ``timeout`` seconds each.
    """

    kind: Kind = "redis"
    provider: ProviderName = "process"

    def __init__(
        self,
        executable: str | None = None,
        host: str = "127.0.0.1",
        *,
        master_name: str = "mw-primary",
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 2000,
        failover_timeout_ms: int = 4000,
        timeout: float = 60.0,
    ) -> None:
        if not 1 <= quorum <= sentinels:
            raise ValueError("the quorum must be between 1 and the number of sentinels")
        self.executable = executable
        self.host = host
        self.master_name = master_name
        self.sentinel_count = sentinels
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.timeout = timeout
        self._tmpdir: Path | None = None
        self._data: list[RedisNodeProcess] = []
        self._sentinels: list[RedisNodeProcess] = []
        self._spec: ServerSpec | None = None

    @property
    def label(self) -> str:
        return f"process {self.executable or 'redis-server'} (primary, replica, {self.sentinel_count} sentinels)"

    @property
    def spec(self) -> ServerSpec:
        if self._spec is None:
            raise RuntimeError("RedisSentinelGroup is not started")
        return self._spec

    @property
    def url(self) -> str:
        """The URL of the primary the sentinels report now."""
        host, port = self.primary_address()
        return f"redis://{host}:{port}/0"

    @property
    def admin_url(self) -> str:
        return self.url

    @property
    def directory(self) -> Path:
        """The temp dir holding each node's own dir (its ``redis.log``), removed by ``stop``."""
        if self._tmpdir is None:
            raise RuntimeError("RedisSentinelGroup is not started")
        return self._tmpdir

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [node.address for node in self._sentinels]

    @property
    def sentinel_hosts(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.sentinels)

    @property
    def pids(self) -> list[int]:
        """Pids of every running process of the group, sentinels included."""
        return [node.pid for node in (*self._data, *self._sentinels) if node.alive]

    def start(self) -> ServerSpec:
        executable = find_redis_server(self.executable)
        self._tmpdir = tmpdir = Path(tempfile.mkdtemp(prefix="mw-redis-sentinel-"))
        with all_or_nothing(self.stop, "redis sentinel group did not come up"):
            primary = RedisNodeProcess(executable, self.host, tmpdir / "primary", self._data_argv(tmpdir / "primary"))
            self._data.append(primary)
            primary.start()
            replica_dir = tmpdir / "replica"
            replica = RedisNodeProcess(executable, self.host, replica_dir, self._data_argv(replica_dir, primary))
            self._data.append(replica)
            replica.start()
            for index in range(self.sentinel_count):
                directory = tmpdir / f"sentinel{index}"
                sentinel = RedisNodeProcess(executable, self.host, directory, self._sentinel_argv(directory, primary))
                self._sentinels.append(sentinel)
                sentinel.start()
                self._hurry(sentinel)
            self.wait_ready()
        host, port = self._data[0].address
        detail = f"{executable} sentinel group {self.master_name!r}, pids {' '.join(map(str, self.pids))}"
        self._spec = ServerSpec("redis", f"redis://{host}:{port}/0", "process", detail)
        return self._spec

    def _data_argv(self, directory: Path, primary: RedisNodeProcess | None = None) -> Callable[[int], list[str]]:
        follow = ["--replicaof", *map(str, primary.address)] if primary is not None else []
        return lambda port: [
            *node_args(port, self.host, directory),
            # a replica's full sync starts at once (the default waits 5 s for more replicas)
            "--repl-diskless-sync-delay", "0",
            *follow,
        ]  # fmt: skip

    def _sentinel_argv(self, directory: Path, primary: RedisNodeProcess) -> Callable[[int], list[str]]:
        """Write the sentinel's config (it rewrites the file as it learns the topology) and run it in sentinel mode."""
        host, port = primary.address
        name = self.master_name

        def argv(sentinel_port: int) -> list[str]:
            conf = directory / "sentinel.conf"
            conf.write_text(
                "\n".join(
                    [
                        f"port {sentinel_port}",
                        f"bind {self.host}",
                        f"dir {directory}",
                        f"logfile {directory / 'redis.log'}",
                        "daemonize no",
                        f"sentinel myid {secrets.token_hex(20)}",
                        f"sentinel monitor {name} {host} {port} {self.quorum}",
                        f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                        f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                        f"sentinel parallel-syncs {name} 1",
                    ]
                )
                + "\n"
            )
            return [str(conf), "--sentinel"]

        return argv

    @staticmethod
    def _hurry(sentinel: RedisNodeProcess) -> None:
        """Refresh replicas' INFO every second and say hello twice a second (defaults 10 s and 2 s), so a sentinel
        sees a demoted primary as a healthy replica in a second instead of ten; leave TILT (entered when a busy
        machine stalls the sentinel's timer 2 s, no failover meanwhile) after 5 s instead of 30. Redis < 7.0 has no
        ``SENTINEL DEBUG``: it just stays slower."""
        import redis

        try:
            with sentinel.client() as client:
                client.execute_command(
                    "SENTINEL", "DEBUG", "INFO-PERIOD", 1000, "PUBLISH-PERIOD", 500, "TILT-PERIOD", 5000
                )
        except redis.ResponseError:
            pass

    def _sentinel_master(self, sentinel: RedisNodeProcess) -> dict[str, str]:
        with sentinel.client() as client:
            return _pairs(client.execute_command("SENTINEL", "MASTER", self.master_name))

    def _sentinel_replicas(self, sentinel: RedisNodeProcess) -> list[dict[str, str]]:
        with sentinel.client() as client:
            return [_pairs(entry) for entry in client.execute_command("SENTINEL", "REPLICAS", self.master_name)]

    def _readiness(self) -> str:
        """ "" when every running sentinel sees the primary up with a healthy replica and knows all other sentinels
        (what ``SENTINEL FAILOVER`` and an automatic failover need); else what is missing."""
        running = [node for node in self._sentinels if node.alive]
        addresses = set()
        for sentinel in running:
            master = self._sentinel_master(sentinel)
            addresses.add((master["ip"], int(master["port"])))
            if master["flags"] != "master":
                return f"sentinel {sentinel.port} flags the primary {master['flags']}"
            if int(master["num-other-sentinels"]) < len(running) - 1:
                return f"sentinel {sentinel.port} knows {master['num-other-sentinels']} other sentinels"
            good = [
                r
                for r in self._sentinel_replicas(sentinel)
                if r["flags"] == "slave" and r["master-link-status"] == "ok" and self._running(r)
            ]
            if not good:
                return f"sentinel {sentinel.port} knows no healthy running replica"
        if len(addresses) != 1:
            return f"the sentinels disagree on the primary: {sorted(addresses)}"
        return self._confirms(addresses.pop())

    def _confirms(self, address: tuple[str, int]) -> str:
        """ "" once a write on the primary is confirmed by a replica (``WAIT``): the sentinels' view of the link is up
        to a second old, and a replica still in its first sync confirms nothing, so a runtime's first write with
        ``MW_REDIS_WAIT_REPLICAS`` would be unconfirmed (and dropped from its tiers)."""
        primary = next((node for node in self._data if node.address == address and node.alive), None)
        if primary is None:
            return f"the primary {address} is not running"
        with primary.client() as client:
            client.set(PROBE_KEY, "1", px=1000)
            if int(client.execute_command("WAIT", 1, 500)) < 1:
                return f"no replica confirms a write on {address[0]}:{address[1]} yet"
        return ""

    def _running(self, replica: dict[str, str]) -> bool:
        port = int(replica["port"])
        return any(node.port == port and node.alive for node in self._data)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until a failover could happen (see ``_readiness``); ``TimeoutError`` says what was missing."""
        wait_for(self._readiness, self.timeout if timeout is None else timeout, "a ready sentinel group")

    def primary_address(self) -> tuple[str, int]:
        """The primary as the first running sentinel reports it."""
        sentinel = next(node for node in self._sentinels if node.alive)
        with sentinel.client() as client:
            host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        return str(host), int(port)

    def nodes(self) -> list[DataNode]:
        """The primary and the replica in start order, each with the role it reports (``down`` if killed)."""
        result = []
        for node in self._data:
            role: Literal["primary", "replica", "down"] = "down"
            if node.alive:
                with node.client() as client:
                    role = "primary" if client.execute_command("ROLE")[0] == "master" else "replica"
            host, port = node.address
            result.append(DataNode(host, port, role, node.pid if node.alive else None))
        return result

    def primary(self) -> DataNode:
        """The node the sentinels report as the primary."""
        address = self.primary_address()
        return next(node for node in self.nodes() if node.address == address)

    def _switched(self, old: tuple[str, int]) -> Callable[[], str]:
        """A condition: every running sentinel reports one primary other than ``old``, and it takes a write."""

        def condition() -> str:
            reported = set()
            for sentinel in self._sentinels:
                if sentinel.alive:
                    with sentinel.client() as client:
                        host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                    reported.add((str(host), int(port)))
            if len(reported) != 1 or old in reported:
                return f"the sentinels report {sorted(reported)} (old primary {old})"
            new = next(node for node in self._data if node.address in reported)
            with new.client() as client:
                client.set(PROBE_KEY, "1", px=1000)
            return ""

        return condition

    def failover(self) -> DataNode:
        """``SENTINEL FAILOVER``; return the new primary once every sentinel reports it, it takes writes and the
        old primary is its synced replica (so the next failover can follow). Resent while a sentinel answers that
        no good replica or a failover in progress stops it."""
        import redis

        old = self.primary_address()
        if not any(node.alive and node.address != old for node in self._data):
            raise ValueError("no running replica to fail over to (restart the killed node first)")
        sentinel = next(node for node in self._sentinels if node.alive)

        def asked() -> str:
            try:
                with sentinel.client() as client:
                    client.execute_command("SENTINEL", "FAILOVER", self.master_name)
            except redis.ResponseError as exc:
                return str(exc)
            return ""

        wait_for(asked, self.timeout, "a sentinel starting the failover")
        wait_for(self._switched(old), self.timeout, "the sentinels switching to the replica")
        self.wait_ready()
        return self.primary()

    def kill_primary(self) -> DataNode:
        """SIGKILL the primary (a crash); return the new primary once the sentinels have failed over to the replica
        and it takes writes. The old primary stays down until ``restart``."""
        old = self.primary_address()
        next(node for node in self._data if node.address == old).kill()
        wait_for(self._switched(old), self.timeout, "the sentinels failing over the crashed primary")
        return self.primary()

    def restart(self, node: DataNode) -> DataNode:
        """Start a killed data node again on its port (empty: nothing was persisted) as a replica of the current
        primary; return it once it is synced and every sentinel counts it as a healthy replica."""
        process = next(proc for proc in self._data if proc.port == node.port)
        process.restart()
        host, port = self.primary_address()
        if (host, port) != process.address:
            with process.client() as client:
                client.execute_command("REPLICAOF", host, port)
        self.wait_ready()
        return next(now for now in self.nodes() if now.port == node.port)

    def stop(self) -> None:
        """Stop the sentinels first (so none fails over what is going away), then the data nodes; remove the dir."""
        for node in (*self._sentinels, *self._data):
            node.stop()
        self._sentinels, self._data = [], []
        self._spec = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


def redis_sentinel_proc(
    executable: str | None = None,
    *,
    master_name: str = "mw-primary",
    scope: Literal["session", "package", "module"] = "session",
    doc: str | None = None,
) -> FixtureFunction:
    """A throwaway Sentinel group (:class:`RedisSentinelGroup`); ``executable`` beats ``--mw-redis-exec``."""
    return topology_fixture(
        lambda o: RedisSentinelGroup(
            executable=executable if executable is not None else o.redis_exec, master_name=master_name
        ),
        doc
        or "Session: a throwaway Sentinel group of local redis-server processes, a primary, a replica and 3 "
        "sentinels (``RedisSentinelGroup``: ``.spec``, ``.sentinels``, ``.master_name``, ``.failover()``, "
        "``.kill_primary()``, ``.restart()``).",
        scope,
    )
