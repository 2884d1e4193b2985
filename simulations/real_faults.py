"""A scenario's ``[[faults]]`` applied for real: ``--realtime`` on the redis and containers backends.

With ``--realtime FACTOR`` a simulated second lasts ``FACTOR`` wall seconds, so a window ``at_s``/``for_s`` is also a
window of wall time (``at_s * FACTOR`` after the run's clock started, for ``for_s * FACTOR``). A SimPy process acts on
the server the run started when the simulated clock reaches ``at_s`` and undoes it at ``end_s``:

* ``l2_down``, ``mode = "pause"`` (default): SIGSTOP of the ``redis-server`` (the engine's pause for a container).
  Connections stay open and stop answering: every L2 call waits ``MW_REDIS_TIMEOUT_S`` and fails, the runtime
  degrades to Mlt. At ``end_s`` SIGCONT (unpause): the server answers again with its data.
* ``l2_down``, ``mode = "kill"``: SIGKILL, and at ``end_s`` a new ``redis-server`` on the same port, empty (L2 is
  lost); for a container the engine's kill and start (its Redis's snapshots turned off and its dump removed first,
  else it would come back with its last snapshot; a restart on another published port is a ``ServerUnavailable``).
* ``mlt_down``, ``mode = "pause"``: SIGSTOP of the postmaster and every backend (the engine's pause for a container);
  each Mlt call waits ``MW_MLT_TIMEOUT_S`` and gets ``MltUnavailable``.
* ``mlt_down``, ``mode = "kill"``: an immediate shutdown (``pg_ctl -m immediate``, as a crash: connections break,
  new ones are refused at once) and at ``end_s`` a start of the same cluster on the same port; a checkpoint first
  keeps every committed row (with the throwaway cluster's fast settings an immediate shutdown lost some). For a
  container: a checkpoint, the engine's kill (every process in it at once) and at ``end_s`` its start, on the same
  published port (else ``ServerUnavailable``); its data directory is the container's own, so the rows survive.
* ``pubsub_dropped``: ``CLIENT KILL TYPE pubsub`` on the run's Redis at ``at_s``, and again every
  :data:`RECUT_WALL_S` of wall time while the window is open (the runtime's subscribers reconnect at once): what is
  published to a cut subscriber is lost, and the runtime must notice (a fresh subscription) and flush its local tiers.
  Only on a Redis the run started: on a given one (``--redis-url``) it would cut every subscriber, others' too.
* ``l2_failover`` (``--backend redis-sentinel`` or ``redis-cluster``): SIGKILL of the primary (Sentinel's, or on a
  cluster the one serving slot 0) at ``at_s``; its replica takes over (the sentinels or the cluster promote it, a few
  wall seconds) while the run goes on, and at ``end_s`` the killed node is started again (empty) as a replica.
* ``l2_reshard`` (``--backend redis-cluster``): slots move with their keys between primaries while the window is
  open, :data:`RESHARD_SLOTS` at a time, each from its owner to the next primary (clients get ``MOVED`` and ``ASK``).
  Both run on a thread of their own (a kill waits for the promotion, a move for every node to agree): the agents go
  on calling meanwhile, which is the point.
* ``l2_slow`` and ``agent_crash`` stay the seam's and the model's (:mod:`simulations.fault_windows`): the seam
  charges the delay in simulated time, which the real-time clock turns into ``delay_ms * FACTOR`` of wall time for the
  agent that made the call. Slowing a real server down would need a proxy or netem; not done.

SimPy runs on one thread: while a call waits for a stopped server, the simulated clock stands still, so a window's
wall span is ``for_s * FACTOR`` plus the time calls waited (each window records ``wall_start_s``, ``wall_end_s`` and
``behind_s``); the clock then catches up at full speed (``strict=False``). Its simulated span is exact.

A real fault refuses a server the run did not start (``--backend redis --redis-url``): a
:class:`~simulations.scenario.ScenarioError` (exit 2) naming the kind.

The oracle and the checks see these windows as they see the seam's: the stampede check's L2 outages, the caller-error
windows. Other nodes hear of a change made while their bus was cut only when it is back; the oracle accepts the old
copy until ``end_s`` plus :data:`RECOVERY_WALL_S` of wall time (in simulated seconds: divided by the factor). A runtime
that did not recover in that time serves copies beyond the bound, which ``no_stale_reads`` fails.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, Protocol, runtime_checkable

import simpy

from simulations.backends import Backend
from simulations.scenario import FaultWindow, ScenarioError

REAL_KINDS = ("l2_down", "mlt_down", "pubsub_dropped", "l2_failover", "l2_reshard")
"""Kinds applied on the servers themselves with ``--realtime`` on a real backend."""
TOPOLOGY_KINDS = {"l2_failover": ("redis-sentinel", "redis-cluster"), "l2_reshard": ("redis-cluster",)}
"""Kinds that change an L2 topology, and the backends that have one; applied for real only."""
RESHARD_SLOTS = 8
"""Slots an ``l2_reshard`` window moves per step."""

RECUT_WALL_S = 0.05
"""How often (wall seconds) a ``pubsub_dropped`` window cuts the subscriptions that came back."""

RECOVERY_WALL_S = 1.0
"""Wall seconds after a window in which the runtime must have its bus back and have flushed (the oracle's bound)."""

EXTEND_POLL_S = 0.5
"""Simulated seconds between looks at a failover that outlasts its window (:meth:`RealFaults._topology`)."""

PROBE_TIMEOUT_S = 0.05
"""The PING the controller sends once a server is stopped, to record that it no longer answers."""


@runtime_checkable
class Pausable(Protocol):
    def pause(self) -> None: ...

    def resume(self) -> None: ...


@runtime_checkable
class Restartable(Protocol):
    def kill(self) -> None: ...

    def restart(self) -> None: ...


def real(windows: Sequence[FaultWindow]) -> list[FaultWindow]:
    return [w for w in windows if w.kind in REAL_KINDS]


def seam(windows: Sequence[FaultWindow]) -> list[FaultWindow]:
    """The windows the seam and the model still apply when the others are real."""
    return [w for w in windows if w.kind not in REAL_KINDS]


class RealFaults:
    """Applies the real windows of one run on the ``backend``'s servers, on the SimPy real-time clock."""

    def __init__(
        self,
        env: simpy.Environment,
        windows: Sequence[FaultWindow],
        backend: Backend,
        factor: float,
        on_wiped: Callable[[], object] = lambda: None,
        errors: Callable[[], dict[str, int]] = dict,
        on_extended: Callable[[float, float, float], object] = lambda start, end, until: None,
    ) -> None:
        self.env = env
        self.errors = errors
        """The runtime's own tier error counters now (``l2_errors``, ``mlt_errors``): each window reports what they
        counted while it was open, next to what the callers saw (``caller_errors``), as the runtime's column."""
        self.on_wiped = on_wiped
        """Called when a killed Redis is back, empty (the stampede check's generations end there)."""
        self.on_extended = on_extended
        """Called with ``(at_s, end_s, until_s)`` when a failover window outlasted its declared span (the promotion
        came later): the checks' outage then lasts until ``until_s``, the promotion plus the recovery bound."""
        self.windows = real(windows)
        self.backend = backend
        self.factor = factor
        self.records: list[dict[str, Any]] = []
        self._before: dict[int, dict[str, int]] = {}
        self._undo: dict[int, Any] = {}
        self._threads: list[threading.Thread] = []
        self._t0: float | None = None
        self._check()

    def _server(self, window: FaultWindow) -> Any:
        kind = "postgres" if window.kind == "mlt_down" else "redis"
        return self.backend.servers.get(kind)

    def _check(self) -> None:
        for w in self.windows:
            if w.kind in TOPOLOGY_KINDS:
                if self.backend.name not in TOPOLOGY_KINDS[w.kind]:
                    raise ScenarioError(
                        f"[[faults]] {w.kind} changes an L2 topology: run with --backend "
                        f"{' or '.join(TOPOLOGY_KINDS[w.kind])} --realtime, not {self.backend.name}"
                    )
                continue
            if w.kind == "pubsub_dropped":
                if self.backend.servers.get("redis") is None:
                    raise ScenarioError(
                        f"pubsub_dropped needs the simulated bus or a Redis the run started: with --realtime on "
                        f"{self.backend.name} the nodes use the given Redis's pub/sub, where CLIENT KILL TYPE pubsub "
                        f"would cut every subscriber, not only the run's (use --backend containers)"
                    )
                continue
            server = self._server(w)
            what = "PostgreSQL" if w.kind == "mlt_down" else "Redis"
            if server is None:
                raise ScenarioError(
                    f"[[faults]] {w.kind} with --realtime on {self.backend.name} stops the {what} the run started; "
                    f"this run was given its {what} (use --backend containers, which starts its own)"
                )
            need = Restartable if w.how == "kill" else Pausable
            if not isinstance(server, need):
                raise ScenarioError(
                    f"[[faults]] {w.kind} mode = {w.how!r}: the {what} {server.provider} server cannot be "
                    f"{'killed and restarted' if w.how == 'kill' else 'paused'} (local processes can)"
                )
        self._check_overlaps()

    def _check_overlaps(self) -> None:
        """Two real windows on one server would undo each other (the first's resume ends the second's pause; a
        subscriber cut on a paused Redis blocks the clock): refused."""
        target = {kind: "redis" for kind in REAL_KINDS} | {"mlt_down": "postgres"}
        spans = sorted((target[w.kind], w.at_s, w.end_s, w.kind) for w in self.windows)
        for (server, _, end, kind), (other, start, _, later) in itertools.pairwise(spans):
            if server == other and start < end:
                raise ScenarioError(
                    f"[[faults]] {kind} and {later} overlap at {start:g} s on the same "
                    f"{'PostgreSQL' if server == 'postgres' else 'Redis'}: real windows on one server must not overlap"
                )

    def outages(self) -> list[tuple[float, float]]:
        """``(start, until)`` of the windows in which nodes may not hear of each other's changes (the oracle's)."""
        kinds = ("l2_down", "pubsub_dropped", "l2_failover")
        return [(w.at_s, w.end_s + self.slack_s) for w in self.windows if w.kind in kinds]

    @property
    def slack_s(self) -> float:
        """The runtime's recovery bound in simulated seconds: how long after a window nodes may still disagree."""
        return RECOVERY_WALL_S / self.factor

    def start(self) -> None:
        self.env.process(self._clock())
        for n, w in enumerate(self.windows):
            record: dict[str, Any] = {"kind": w.kind, "start_s": w.at_s, "end_s": w.end_s}
            if w.kind in ("l2_down", "mlt_down"):
                record["mode"] = w.how
            self.records.append(record)
            if w.kind in TOPOLOGY_KINDS:
                self.env.process(self._topology(w, record))
            else:
                self.env.process(self._pubsub(w, record) if w.kind == "pubsub_dropped" else self._window(n, w, record))

    def _clock(self) -> Generator[simpy.Event, Any, None]:
        self._t0 = time.monotonic()  # the run's first event: the real-time clock's start (synced after seeding)
        yield self.env.timeout(0)

    def _wall(self) -> float:
        return round(time.monotonic() - (self._t0 or time.monotonic()), 4)

    def _opened(self, record: dict[str, Any]) -> dict[str, int]:
        record["wall_start_s"] = self._wall()
        self._before[id(record)] = before = self.errors()
        return before

    def _closed(self, record: dict[str, Any], before: dict[str, int], end_s: float) -> None:
        record["wall_end_s"] = wall = self._wall()
        record["behind_s"] = round(wall - end_s * self.factor, 4)
        after = self.errors()
        record["runtime_errors"] = {k: after[k] - before.get(k, 0) for k in after}

    def _window(self, n: int, w: FaultWindow, record: dict[str, Any]) -> Generator[simpy.Event, Any, None]:
        server = self._server(w)
        yield self.env.timeout(w.at_s)
        before = self._opened(record)
        record["server"] = _identity(server)
        self._undo[n] = server.restart if w.how == "kill" else server.resume
        try:
            server.kill() if w.how == "kill" else server.pause()
            record["state"] = _state(server, w.how)
        except Exception as exc:  # recorded, never a crashed run: the undo below still runs
            record["error"] = f"{type(exc).__name__}: {exc}"
        if w.kind == "l2_down":
            record["ping"] = _ping(self._admin_url())
        yield self.env.timeout(w.for_s)
        try:
            self._undo[n]()
            del self._undo[n]  # only once it worked: close() retries one that failed
        except Exception as exc:
            record["undo_error"] = f"{type(exc).__name__}: {exc}"
        if w.how == "kill" and w.kind == "l2_down":
            self.on_wiped()
        self._closed(record, before, w.end_s)
        record["after"] = _identity(server)

    def _topology(self, w: FaultWindow, record: dict[str, Any]) -> Generator[simpy.Event, Any, None]:
        """``l2_failover`` or ``l2_reshard``: the change runs on a thread while the simulated window passes."""
        group = self.backend.servers["redis"]
        yield self.env.timeout(w.at_s)
        before = self._opened(record)
        stop = threading.Event()
        if w.kind == "l2_failover":
            act = threading.Thread(target=self._fail_over, args=(group, record), name="mw-sim-failover")
        else:
            act = threading.Thread(target=self._reshard, args=(group, record, stop), name="mw-sim-reshard")
        self._threads.append(act)
        act.start()
        yield self.env.timeout(w.for_s)
        stop.set()  # a reshard stops after the slot it is moving; the run goes on meanwhile (close() waits for it)
        if w.kind == "l2_failover":
            back = threading.Thread(target=self._bring_back, args=(group, record, act), name="mw-sim-rejoin")
            self._threads.append(back)
            back.start()  # after the promotion, the rejoin (a sync of the replica) goes on while the run does
            # L2 is unreachable for the killed primary's keys until its replica is promoted, however long that takes
            # on a busy machine: the window stays open until then, plus the runtime's recovery bound. (A run that
            # ends first still gets its node back: the rejoin thread waits for the promotion, close() for it.)
            if act.is_alive():
                self.on_extended(w.at_s, w.end_s, math.inf)  # open-ended while the promotion is pending
                while act.is_alive():
                    yield self.env.timeout(EXTEND_POLL_S)
                until = self.env.now + self.slack_s
                record["held_open_until_s"] = round(until, 3)
                self.on_extended(w.at_s, w.end_s, until)
            self.on_wiped()  # leases held on the old primary may be gone: a second load of a key is allowed
        self._closed(record, before, w.end_s)

    def _fail_over(self, group: Any, record: dict[str, Any]) -> None:
        start = time.monotonic()
        try:
            if hasattr(group, "kill_primary"):  # a Sentinel group
                record["killed"] = f"{group.primary().host}:{group.primary().port}"
                new = group.kill_primary()
            else:
                victim = group.owner(0)
                record["killed"] = f"{victim.host}:{victim.port}"
                new = group.kill(victim)
            record["promoted"] = f"{new.host}:{new.port}"
            record["promotion_wall_s"] = round(time.monotonic() - start, 3)
        except Exception as exc:  # recorded, never a crashed run
            record["error"] = f"{type(exc).__name__}: {exc}"

    @staticmethod
    def _bring_back(group: Any, record: dict[str, Any], failover: threading.Thread) -> None:
        failover.join()  # the promotion first: a node restarted before it would rejoin as the primary again
        host, port = str(record.get("killed", ":0")).rsplit(":", 1)
        try:
            node = next((n for n in group.nodes() if n.port == int(port) and n.host == host), None)
            if node is not None:
                group.restart(node)
                record["restarted"] = f"{host}:{port}"
        except Exception as exc:  # recorded, never a crashed run
            record["undo_error"] = f"{type(exc).__name__}: {exc}"

    @staticmethod
    def _reshard(group: Any, record: dict[str, Any], stop: threading.Event) -> None:
        moved, slot = 0, 0
        try:
            while not stop.is_set():
                ports = [p.port for p in group.primaries()]
                for _ in range(RESHARD_SLOTS):
                    if stop.is_set():
                        break
                    after = (ports.index(group.owner(slot).port) + 1) % len(ports)
                    group.move_slot(slot, group.primaries()[after])
                    moved += 1
                    slot = (slot + 2731) % 16384  # spread over the key space
        except Exception as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["slots_moved"] = moved

    def _pubsub(self, w: FaultWindow, record: dict[str, Any]) -> Generator[simpy.Event, Any, None]:
        import redis

        url = self._admin_url()
        yield self.env.timeout(w.at_s)
        before = self._opened(record)
        record.update(cuts=0, killed=0)
        every = RECUT_WALL_S / self.factor
        with redis.Redis.from_url(url, socket_timeout=1.0) as client:
            while self.env.now < w.end_s:
                try:
                    record["killed"] += int(client.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))
                    record["cuts"] += 1
                except redis.RedisError as exc:  # recorded, never a crashed run
                    record["errors"] = record.get("errors", 0) + 1
                    record["error"] = f"{type(exc).__name__}: {exc}"
                yield self.env.timeout(min(every, w.end_s - self.env.now))
        self._closed(record, before, w.end_s)

    def _admin_url(self) -> str:
        """The URL to probe and to cut subscribers with: the server's admin user's where it has one (a TLS server's
        runtime user may not run ``CLIENT KILL``), else the run's."""
        admin = getattr(self.backend.servers.get("redis"), "admin_url", None)
        url = admin or self.backend.redis_url
        assert url is not None
        return str(url)

    def close(self) -> None:
        """Undo what a window left applied (the run stopped inside it): servers answer again for the cleanup. A window
        the run ended inside (or while it was held open) is closed here, marked ``open_at_end``."""
        for record in self.records:
            if "wall_start_s" in record and "wall_end_s" not in record:
                record["open_at_end"] = True
                self._closed(record, self._before.get(id(record), {}), self.env.now)
        for undo in list(self._undo.values()):
            with contextlib.suppress(Exception):
                undo()
        self._undo.clear()
        for thread in self._threads:
            thread.join()

    def summary(self) -> dict[str, Any]:
        """``result["runs"][...]["faults"]["real"]``: each real window, its wall-clock span and what was done."""
        return {"factor": self.factor, "windows": self.records}


def _identity(server: Any) -> str:
    pid = getattr(server, "pid", None)
    if pid is not None:
        return f"{server.provider} pid {pid}"
    return f"{server.provider} {getattr(server, 'image', '')}".strip()


def _state(server: Any, how: str) -> str:
    """What the server's process (or container) is now: ``T`` (stopped), ``paused``, ``killed``."""
    if how == "kill":
        return "killed"
    status = getattr(server, "status", None)
    if status is not None:
        return str(status)
    from pytest_mw.servers.readiness import process_state

    return process_state(server.pid)


def _ping(url: str) -> str:
    """``answered``, or the error a PING got (``TimeoutError``: a stopped server; ``ConnectionError``: a dead one)."""
    import redis

    try:
        with redis.Redis.from_url(url, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S) as c:
            c.ping()
    except redis.RedisError as exc:
        return type(exc).__name__
    return "answered"
