"""A throwaway Redis Cluster of local ``redis-server`` processes: 3 primaries with a replica each, built from Python.

The cluster is made with ``CLUSTER ADDSLOTSRANGE``/``MEET``/``REPLICATE`` (no ``redis-cli`` needed) and handed over
only once every node says ``cluster_state:ok``, agrees on every node's role and every replica is synced. Tests get
helpers for the topology changes a cache must survive: a manual failover, a crash (``kill``) and a rejoin
(``restart``), and a one-slot reshard (``move_slot``, keys included, so clients see ``MOVED``).

:class:`RedisNodeProcess` (one ``redis-server`` that can be crashed and restarted on its port) is shared with
:mod:`.redis_sentinel`, and :func:`topology_fixture` makes the session fixtures of both modules.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import pytest

from pytest_mw.servers.errors import ServerUnavailable
from pytest_mw.servers.factories import unavailable
from pytest_mw.servers.ports import free_port
from pytest_mw.servers.readiness import wait_until_ready
from pytest_mw.servers.redis_cluster_containers import ContainerRunner
from pytest_mw.servers.redis_proc import find_redis_server
from pytest_mw.servers.settings import ServerOptions, stashed_server_options
from pytest_mw.servers.spec import Kind, ProviderName, ServerSpec, StartStop

if TYPE_CHECKING:
    import redis

SLOTS = 16384
NodeRole = Literal["primary", "replica"]
FixtureFunction = Callable[..., Any]

PERSISTENCE_OFF = ("--save", "", "--appendonly", "no")
"""Nothing is written to disk, so a stop is instant and a restarted node comes back empty (as after a crash)."""


def node_args(port: int, host: str, directory: Path) -> list[str]:
    """What every throwaway node runs with: its port and host, no persistence, its own dir and log, in front."""
    return [
        "--port", str(port),
        "--bind", host,
        *PERSISTENCE_OFF,
        "--dir", str(directory),
        "--logfile", str(directory / "redis.log"),
        "--daemonize", "no",
    ]  # fmt: skip


@contextlib.contextmanager
def all_or_nothing(stop: Callable[[], None], what: str) -> Iterator[None]:
    """A group's start: whatever fails, ``stop`` leaves nothing running, then one ``ServerUnavailable`` says why."""
    try:
        yield
    except Exception as exc:
        stop()
        reason = exc.reason if isinstance(exc, ServerUnavailable) else f"{type(exc).__name__}: {exc}"
        raise ServerUnavailable(f"{what}: {reason}") from exc


def wait_for(condition: Callable[[], str], timeout: float, what: str) -> None:
    """Poll ``condition`` (``""`` when met, else why not) until it is met; ``TimeoutError`` says the last reason.

    An exception from ``condition`` (a node still restarting) counts as "not yet".
    """
    deadline = time.monotonic() + timeout
    reason = "not checked"
    while True:
        try:
            reason = condition()
        except Exception as exc:  # any failure of a probe means "not yet"
            reason = f"{type(exc).__name__}: {exc}"
        if not reason:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout:g} s: {reason}")
        time.sleep(0.1)


def redis_client(host: str, port: int, timeout: float = 5.0) -> redis.Redis:
    """A plain client to one node (no cluster routing), decoding replies, for the provider's own commands.

    No retries: a node that is down must fail at once (every wait polls again), not after redis-py's backoff.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        host=host,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    )


class NodeRunner(Protocol):
    """What runs a node's ``redis-server``: a local process (:class:`ProcessRunner`) or a container
    (:class:`~pytest_mw.servers.redis_cluster_containers.ContainerRunner`). It knows nothing of ports or readiness."""

    what: str
    """How messages name the node (``redis-server``, ``redis container``)."""

    def launch(self, args: list[str], directory: Path) -> None:
        """Start ``redis-server args`` (its files in ``directory``); raise if it cannot even be started."""

    @property
    def alive(self) -> bool: ...

    @property
    def pid(self) -> int: ...

    def kill(self) -> None:
        """SIGKILL: a crash."""

    def stop(self) -> None:
        """Stop and forget it (nothing is left running)."""


class ProcessRunner:
    """A local ``redis-server`` process."""

    what = "redis-server"

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self._proc: subprocess.Popen[bytes] | None = None

    def launch(self, args: list[str], directory: Path) -> None:
        self._proc = subprocess.Popen([self.executable, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the node is not running")
        return self._proc.pid

    def kill(self) -> None:
        """SIGKILL and reap: the node vanishes as in a crash (no goodbye to replicas, sentinels or the cluster)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()

    def stop(self) -> None:
        """SIGTERM (instant without persistence), SIGKILL if it lingers."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._proc = None


class RedisNodeProcess:
    """One ``redis-server`` in ``directory`` on a free port, started with ``argv(port)``; it can be crashed
    (``kill``: SIGKILL, as a real crash) and started again on the same port with the same arguments (``restart``).
    ``runner`` runs it: a local process of ``executable`` unless given (a container: ``ContainerRunner``).
    """

    def __init__(
        self,
        executable: str,
        host: str,
        directory: Path,
        argv: Callable[[int], list[str]],
        startup_timeout: float = 20.0,
        runner: NodeRunner | None = None,
    ) -> None:
        self.host = host
        self.directory = directory
        self._argv = argv
        self.startup_timeout = startup_timeout
        self.runner: NodeRunner = runner if runner is not None else ProcessRunner(executable)
        self.port: int | None = None
        self.args: list[str] = []

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    @property
    def address(self) -> tuple[str, int]:
        if self.port is None:
            raise RuntimeError("the node is not started")
        return self.host, self.port

    @property
    def pid(self) -> int:
        return self.runner.pid

    @property
    def alive(self) -> bool:
        return self.runner.alive

    def client(self, timeout: float = 5.0) -> redis.Redis:
        host, port = self.address
        return redis_client(host, port, timeout)

    def start(self) -> None:
        """Start on a free port (three tries, as another process may take it); ``ServerUnavailable`` with the log."""
        self.directory.mkdir(parents=True, exist_ok=True)
        failure = ""
        for _ in range(3):
            port = free_port(self.host)
            failure = self._launch(self._argv(port), port)
            if not failure:
                return
        raise ServerUnavailable(f"{self.runner.what} did not start in {self.directory}: {failure}")

    def restart(self) -> None:
        """Start again with the arguments and port of the first start (a crashed node coming back)."""
        if self.alive:
            raise RuntimeError(f"node {self.port} is running")
        if self.port is None or not self.args:
            raise RuntimeError("the node was never started")
        failure = self._launch(self.args, self.port)
        if failure:
            raise ServerUnavailable(f"{self.runner.what} did not restart on {self.port}: {failure}")

    def _launch(self, args: list[str], port: int) -> str:
        """Run ``redis-server args``; return "" once it answers PING, else what went wrong (the node gone)."""
        self.args, self.port = args, port
        self.runner.stop()  # a crashed node's leftovers (a container's stopped box) go before the new one
        try:
            self.runner.launch(args, self.directory)
        except Exception as exc:  # no engine, no image, no executable: reported as the reason
            return f"{type(exc).__name__}: {exc}"

        def ping() -> None:
            with self.client(timeout=1.0) as client:
                client.ping()

        try:
            wait_until_ready(ping, self.startup_timeout, lambda: self.runner.alive)
        except Exception as exc:  # reported with the log tail
            self.kill()
            tail = self.log.read_text(errors="replace").strip().splitlines()[-3:] if self.log.exists() else []
            return f"{exc}; log: {' | '.join(tail) or '(empty)'}"
        return ""

    def kill(self) -> None:
        self.runner.kill()

    def stop(self) -> None:
        self.runner.stop()


@dataclass(frozen=True)
class ClusterNode:
    """One node as the cluster reports it at the time of the call (roles change on a failover)."""

    host: str
    port: int
    node_id: str
    role: NodeRole
    pid: int | None
    """``None`` while the process is down (after ``kill``)."""
    primary_id: str | None = None
    """A replica's primary; ``None`` for a primary."""
    slots: tuple[tuple[int, int], ...] = ()
    """A primary's slot ranges, inclusive."""

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


@dataclass(frozen=True)
class _View:
    """One line of ``CLUSTER NODES``: how one node sees another."""

    node_id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def role(self) -> NodeRole:
        return "primary" if "master" in self.flags else "replica"


def _parse_nodes(text: str) -> dict[str, _View]:
    """``CLUSTER NODES`` by node id; importing/migrating markers (``[slot->-id]``) are skipped."""
    views: dict[str, _View] = {}
    for line in text.strip().splitlines():
        fields = line.split()
        address = fields[1].split(",")[0].split("@")[0]
        slots: list[tuple[int, int]] = []
        for item in fields[8:]:
            if item.startswith("["):
                continue
            first, _, last = item.partition("-")
            slots.append((int(first), int(last or first)))
        primary = None if fields[3] == "-" else fields[3]
        port = int(address.rpartition(":")[2] or 0)
        views[fields[0]] = _View(fields[0], port, frozenset(fields[2].split(",")), primary, tuple(slots))
    return views


def _info(client: redis.Redis, section: str) -> dict[str, str]:
    """``CLUSTER INFO`` or an ``INFO`` section as strings (``INFO`` replies come parsed, with guessed types)."""
    if section == "cluster":
        text: str = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        return dict(line.split(":", 1) for line in text.strip().splitlines() if ":" in line)
    return {key: str(value) for key, value in client.info(section).items()}


class RedisClusterProcesses(StartStop):
    """``primaries`` primaries with ``replicas`` replica(s) each, every node a local ``redis-server`` with its own
    temp dir, free ports (client and cluster bus) and no persistence.

    ``url`` names the first primary (``redis.cluster.RedisCluster.from_url`` discovers the rest). ``node_timeout_ms``
    is how long a silent node takes to be declared failed: after ``kill`` of a primary, its replica takes over in
    about twice that. Waits are condition-based, up to ``timeout`` seconds each (generous: the machine may be busy).
    """

    kind: Kind = "redis"
    provider: ProviderName = "process"

    def __init__(
        self,
        executable: str | None = None,
        host: str = "127.0.0.1",
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 3000,
        timeout: float = 60.0,
        image: str | None = None,
    ) -> None:
        if primaries < 1 or replicas < 0:
            raise ValueError("a cluster needs at least one primary and a non-negative replica count")
        self.executable = executable
        self.host = host
        self.primary_count = primaries
        self.replica_count = replicas
        self.node_timeout_ms = node_timeout_ms
        self.timeout = timeout
        self._tmpdir: Path | None = None
        self.image = image
        """Set: every node is a container of this image on the host network
        (:class:`~pytest_mw.servers.redis_cluster_containers.ContainerRunner`), else a local process."""
        if image is not None:
            self.provider = "container"
        self._nodes: list[RedisNodeProcess] = []
        self._ids: dict[int, str] = {}
        self._spec: ServerSpec | None = None

    @property
    def label(self) -> str:
        size = self.primary_count * (1 + self.replica_count)
        what = f"container {self.image}" if self.image else f"process {self.executable or 'redis-server'}"
        return f"{what} (cluster of {size} nodes)"

    @property
    def spec(self) -> ServerSpec:
        if self._spec is None:
            raise RuntimeError("RedisClusterProcesses is not started")
        return self._spec

    @property
    def url(self) -> str:
        """The URL of a primary that is up now (the spec's first primary may have been killed or demoted)."""
        return self.primaries()[0].url

    @property
    def admin_url(self) -> str:
        return self.url

    @property
    def directory(self) -> Path:
        """The temp dir holding each node's own dir (its ``redis.log``), removed by ``stop``."""
        if self._tmpdir is None:
            raise RuntimeError("RedisClusterProcesses is not started")
        return self._tmpdir

    @property
    def pids(self) -> list[int]:
        """Pids of the node processes that are running."""
        return [node.pid for node in self._nodes if node.alive]

    def start(self) -> ServerSpec:
        executable = "" if self.image else find_redis_server(self.executable)
        self._tmpdir = Path(tempfile.mkdtemp(prefix="mw-redis-cluster-"))
        with all_or_nothing(self.stop, "redis cluster did not form"):
            for index in range(self.primary_count * (1 + self.replica_count)):
                directory = self._tmpdir / f"node{index}"
                runner = ContainerRunner(self.image) if self.image else None
                node = RedisNodeProcess(executable, self.host, directory, self._node_argv(directory), runner=runner)
                self._nodes.append(node)
                node.start()
            self._create()
        host, port = self._nodes[0].address
        detail = f"{self.image or executable} cluster pids {' '.join(map(str, self.pids))}"
        self._spec = ServerSpec("redis", f"redis://{host}:{port}/0", self.provider, detail)
        return self._spec

    def _node_argv(self, directory: Path) -> Callable[[int], list[str]]:
        """The arguments of the node living in ``directory``, for a given client port (a fresh bus port each try)."""
        return lambda port: [
            *node_args(port, self.host, directory),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(free_port(self.host)),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # a replica may take over however long it was cut off; replicas stay where they were put
            "--cluster-replica-validity-factor", "0",
            "--cluster-allow-replica-migration", "no",
            # a replica's full sync starts at once (the default waits 5 s for more replicas)
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip

    def _create(self) -> None:
        """Slots to the primaries, everyone meets everyone, replicas follow their primary, then wait until healthy."""
        for epoch, node in enumerate(self._nodes, start=1):
            with node.client() as client:
                self._ids[node.port or 0] = client.execute_command("CLUSTER", "MYID")
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        primaries = self._nodes[: self.primary_count]
        for index, node in enumerate(primaries):
            first, last = index * SLOTS // len(primaries), (index + 1) * SLOTS // len(primaries) - 1
            with node.client() as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        with self._nodes[0].client() as client:
            for node in self._nodes[1:]:
                bus_port = node.args[node.args.index("--cluster-port") + 1]
                client.execute_command("CLUSTER", "MEET", node.host, node.port, bus_port)
        wait_for(self._everyone_knows_everyone, self.timeout, "every node knowing every other")
        for index, node in enumerate(self._nodes[self.primary_count :]):
            primary = primaries[index % len(primaries)]
            with node.client() as client:
                client.execute_command("CLUSTER", "REPLICATE", self._ids[primary.port or 0])
        self.wait_healthy()

    def _everyone_knows_everyone(self) -> str:
        for node in self._nodes:
            with node.client() as client:
                views = _parse_nodes(client.execute_command("CLUSTER", "NODES"))
            if set(views) != set(self._ids.values()):
                return f"node {node.port} knows {len(views)} of {len(self._ids)} nodes"
            pending = [view.port for view in views.values() if view.flags & {"handshake", "noaddr"}]
            if pending:
                return f"node {node.port} is still in handshake with {pending}"
        return ""

    def _views(self) -> dict[int, dict[str, _View]]:
        """Every running node's ``CLUSTER NODES``, by the port of the node asked."""
        views: dict[int, dict[str, _View]] = {}
        for node in self._nodes:
            if node.alive:
                with node.client() as client:
                    views[node.port or 0] = _parse_nodes(client.execute_command("CLUSTER", "NODES"))
        return views

    def _health(self) -> str:
        """ "" when the running primaries' own slot claims cover every slot once, every running node says
        ``cluster_state:ok`` with all slots served, all of them agree with each node's own idea of its role and
        primary, flag no running node as failing and a down node as ``fail``, and every running replica's link to
        its primary is up and synced; else the first thing that is not so (a restarted primary that still claims its
        old slots, say)."""
        views = self._views()
        truth = {
            self._ids[port]: view for port, nodes in views.items() for view in nodes.values() if "myself" in view.flags
        }
        down = {self._ids[node.port or 0] for node in self._nodes if not node.alive}
        claimed = sorted(r for view in truth.values() if view.role == "primary" for r in view.slots)
        ends = [-1] + [bound for first, last in claimed for bound in (first, last)] + [SLOTS]
        if any(ends[i] + 1 != ends[i + 1] for i in range(0, len(ends), 2)):
            return f"the primaries' own slot claims overlap or leave gaps: {claimed}"
        for port, nodes in views.items():
            for node_id in truth:
                if nodes[node_id].flags & {"fail", "fail?"}:
                    return f"node {port} flags running node {nodes[node_id].port} {sorted(nodes[node_id].flags)}"
            for node_id in down:
                if "fail" not in nodes[node_id].flags:
                    return f"node {port} does not see down node {nodes[node_id].port} as failed"
            for node_id, own in truth.items():
                seen = nodes[node_id]
                if (seen.role, seen.primary_id) != (own.role, own.primary_id):
                    return f"node {port} sees {own.port} as {seen.role}, it is {own.role}"
        for node in self._nodes:
            if not node.alive:
                continue
            with node.client() as client:
                info = _info(client, "cluster")
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                    state, served = info.get("cluster_state"), info.get("cluster_slots_ok")
                    return f"node {node.port}: cluster_state {state}, {served} slots served"
                if truth[self._ids[node.port or 0]].role == "replica":
                    replication = _info(client, "replication")
                    if (
                        replication.get("master_link_status") != "up"
                        or replication.get("master_sync_in_progress") != "0"
                    ):
                        return f"replica {node.port} is not synced with its primary"
        return ""

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Wait until the cluster is fully up (see ``_health``); ``TimeoutError`` says what was still wrong."""
        wait_for(self._health, self.timeout if timeout is None else timeout, "a healthy cluster")

    def nodes(self) -> list[ClusterNode]:
        """Every node (running or down), as the running nodes see it now."""
        views = self._views()
        if not views:
            raise RuntimeError("no node of the cluster is running")
        truth = {view.node_id: view for nodes in views.values() for view in nodes.values() if "myself" in view.flags}
        anyone = next(iter(views.values()))
        result = []
        for node in self._nodes:
            node_id = self._ids[node.port or 0]
            view = truth.get(node_id, anyone[node_id])
            pid = node.pid if node.alive else None
            result.append(ClusterNode(node.host, node.port or 0, node_id, view.role, pid, view.primary_id, view.slots))
        return result

    def primaries(self) -> list[ClusterNode]:
        """The running primaries, in start order."""
        return [node for node in self.nodes() if node.role == "primary" and node.pid is not None]

    def replicas_of(self, primary: ClusterNode) -> list[ClusterNode]:
        """The running replicas of ``primary``."""
        return [node for node in self.nodes() if node.primary_id == primary.node_id and node.pid is not None]

    def owner(self, slot: int) -> ClusterNode:
        """The primary serving ``slot`` now."""
        for node in self.primaries():
            if any(first <= slot <= last for first, last in node.slots):
                return node
        raise LookupError(f"no running primary serves slot {slot}")

    def keyslot(self, key: str | bytes) -> int:
        """The hash slot of ``key``, as the cluster computes it."""
        with self._process(self.primaries()[0]).client() as client:
            return int(client.execute_command("CLUSTER", "KEYSLOT", key))

    def _now(self, node: ClusterNode) -> ClusterNode:
        """``node`` as the cluster sees it now (a caller's snapshot may predate a failover)."""
        return next(now for now in self.nodes() if now.port == node.port)

    def _process(self, node: ClusterNode) -> RedisNodeProcess:
        for process in self._nodes:
            if process.port == node.port:
                return process
        raise LookupError(f"no node on port {node.port}")

    def failover(self, primary: ClusterNode) -> ClusterNode:
        """``CLUSTER FAILOVER`` on a replica of ``primary``; return the promoted node once ``primary`` is its replica
        and the cluster is healthy. The command is sent again if a busy machine let a manual failover time out."""
        primary = self._now(primary)
        replicas = self.replicas_of(primary)
        if primary.role != "primary" or not replicas:
            raise ValueError(f"node {primary.port} is not a primary with a running replica")
        replica = replicas[0]

        def promoted() -> str:
            now = {node.port: node for node in self.nodes()}
            if now[replica.port].role == "primary" and now[primary.port].primary_id == replica.node_id:
                return ""
            return f"{replica.port} is {now[replica.port].role}, {primary.port} is {now[primary.port].role}"

        deadline = time.monotonic() + self.timeout
        while True:
            with self._process(replica).client() as client:
                client.execute_command("CLUSTER", "FAILOVER")
            try:
                wait_for(promoted, min(15.0, max(deadline - time.monotonic(), 0.1)), "the replica's promotion")
                break
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise
        self.wait_healthy()
        return self._now(replica)

    def kill(self, node: ClusterNode) -> ClusterNode | None:
        """SIGKILL ``node`` (a crash). For a primary with a replica, wait until the replica has taken over and the
        cluster is healthy again, and return the promoted node; else return ``None`` once all others see it failed."""
        node = self._now(node)
        replicas = self.replicas_of(node) if node.role == "primary" else []
        self._process(node).kill()
        self.wait_healthy()
        if not replicas:
            return None
        return self._now(replicas[0])

    def restart(self, node: ClusterNode) -> ClusterNode:
        """Start a killed node again on its port; it rejoins (a former primary as a replica of its successor), empty
        since nothing was persisted. Return it once the cluster is healthy."""
        self._process(node).restart()
        self.wait_healthy()
        return self._now(node)

    def move_slot(self, slot: int, to: ClusterNode, batch: int = 100) -> None:
        """Move ``slot`` with its keys to the primary ``to``: ``SETSLOT IMPORTING``/``MIGRATING``, ``MIGRATE`` the
        keys in batches, ``SETSLOT NODE`` on the target, the source and the other primaries; return once every
        running node sees ``to`` as the owner. Clients with the old slot map get ``MOVED`` (``ASK`` mid-move)."""
        source, to = self.owner(slot), self._now(to)
        if source.port == to.port:
            return
        if to.role != "primary":
            raise ValueError(f"node {to.port} is not a primary")
        source_proc, target_proc = self._process(source), self._process(to)
        with target_proc.client() as target, source_proc.client() as origin:
            target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
            origin.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", to.node_id)
            while keys := origin.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch):
                origin.execute_command("MIGRATE", to.host, to.port, "", 0, 10_000, "KEYS", *keys)
            target.execute_command("CLUSTER", "SETSLOT", slot, "NODE", to.node_id)
            origin.execute_command("CLUSTER", "SETSLOT", slot, "NODE", to.node_id)
        for primary in self.primaries():
            if primary.port not in (source.port, to.port):
                with self._process(primary).client() as client:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", to.node_id)

        def everyone_agrees() -> str:
            for port, views in self._views().items():
                owners = [v.port for v in views.values() if "master" in v.flags and _serves(v.slots, slot)]
                if owners != [to.port]:
                    return f"node {port} sees slot {slot} on {owners}"
            return ""

        wait_for(everyone_agrees, self.timeout, f"every node seeing slot {slot} on {to.port}")
        self.wait_healthy()

    def stop(self) -> None:
        """Stop every node and remove the temp dir."""
        for node in self._nodes:
            node.stop()
        self._nodes = []
        self._ids = {}
        self._spec = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


def _serves(slots: tuple[tuple[int, int], ...], slot: int) -> bool:
    return any(first <= slot <= last for first, last in slots)


class _Topology(Protocol):
    def start(self) -> ServerSpec: ...

    def stop(self) -> None: ...


_T = TypeVar("_T", bound=_Topology)

_SKIP_NOTE = " Skipped with the reason when it cannot be had; an error with ``--mw-require-servers``."


def topology_fixture(
    make: Callable[[ServerOptions], _T], doc: str, scope: Literal["session", "package", "module"] = "session"
) -> FixtureFunction:
    """A fixture yielding the started provider itself (its helpers are the point; ``.spec`` is the ``ServerSpec``),
    stopped at the end of ``scope``; skipped with the reason (or failed with ``--mw-require-servers``) if it cannot
    start."""

    def topology(request: pytest.FixtureRequest) -> Iterator[_T]:
        options = stashed_server_options(request.config)
        provider = make(options)
        failure: ServerUnavailable | None = None
        try:
            provider.start()
        except ServerUnavailable as exc:
            failure = exc
        if failure is not None:
            unavailable("redis", failure, options)
        try:
            yield provider
        finally:
            provider.stop()

    topology.__doc__ = doc + _SKIP_NOTE
    return pytest.fixture(scope=scope)(topology)


def redis_cluster_proc(
    executable: str | None = None,
    *,
    scope: Literal["session", "package", "module"] = "session",
    doc: str | None = None,
) -> FixtureFunction:
    """A throwaway cluster (:class:`RedisClusterProcesses`: 3 primaries, a replica each); ``executable`` beats
    ``--mw-redis-exec``. With ``--mw-server-provider container`` its nodes are containers of ``--mw-redis-image`` on
    the host network (else local processes, ``auto`` included: a cluster of containers is asked for by name)."""
    return topology_fixture(
        lambda o: RedisClusterProcesses(
            executable=executable if executable is not None else o.redis_exec,
            image=o.redis_image if o.provider == "container" else None,
        ),
        doc
        or "Session: a throwaway Redis Cluster of 6 local redis-server processes (``RedisClusterProcesses``: "
        "``.spec``, ``.nodes()``, ``.failover()``, ``.kill()``, ``.restart()``, ``.move_slot()``).",
        scope,
    )
