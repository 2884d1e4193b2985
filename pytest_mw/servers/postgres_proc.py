"""A throwaway PostgreSQL cluster: ``initdb`` + ``pg_ctl`` in a temp dir on a free port, trust auth, removed at the end.

PostgreSQL refuses to run as root, so when the tests run as root (containers, CI images) the cluster is created and run
as an unprivileged user (``postgres`` if it exists, else ``nobody``) that owns the temp dir.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from pytest_mw.servers.errors import ExecutableNotFound, ServerUnavailable
from pytest_mw.servers.ports import free_port
from pytest_mw.servers.readiness import postgres_ping, wait_stopped, wait_until_ready
from pytest_mw.servers.spec import Kind, ProviderName, ServerSpec, StartStop

FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


VERSIONED_BINDIRS = "/usr/lib/postgresql/[0-9]*/bin"
"""Debian's and Ubuntu's server packages: one bin directory per major version, searched newest first."""
FALLBACK_BINDIRS = ("/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/bin")
BINARIES = ("initdb", "pg_ctl")
HINT = (
    "Install the PostgreSQL server package, or point --mw-postgres-exec (ini: mw_postgres_exec) at pg_ctl or its "
    "bin directory (factories.postgres_proc(bindir=...))."
)


def _pg_config_bindir() -> tuple[str | None, str]:
    """pg_config's ``--bindir`` and how the search went, for the "tried" list."""
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None, "pg_config --bindir (no pg_config on $PATH)"
    try:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{pg_config} --bindir (failed: {exc})"
    bindir = out.stdout.strip()
    return (bindir or None), f"{pg_config} --bindir = {bindir or '(empty)'}"


def _missing(directory: str) -> str:
    """ "" when ``directory`` holds runnable initdb and pg_ctl, else what is wrong with it."""
    if not os.path.isdir(directory):
        return "no such directory"
    absent = [exe for exe in BINARIES if not os.access(os.path.join(directory, exe), os.X_OK)]
    return f"no {' or '.join(absent)}" if absent else ""


def _search(versioned: str, fallbacks: Sequence[str]) -> list[tuple[str | None, str]]:
    """Every place looked in, in order, as (directory to check or None, how it reads in the "tried" list)."""
    places = [_pg_config_bindir()]
    on_path = shutil.which("pg_ctl")
    if on_path is None:
        places.append((None, "pg_ctl on $PATH (not found)"))
    else:
        places.append((os.path.dirname(on_path), f"pg_ctl on $PATH = {on_path}"))
    matches = sorted(glob.glob(versioned), key=lambda p: int(p.rstrip("/").split("/")[-2].split(".")[0]), reverse=True)
    if not matches:
        places.append((None, f"{versioned} (no match)"))
    places += [(match, match) for match in matches]
    places += [(fallback, fallback) for fallback in fallbacks]
    return places


def find_postgres_bindir(
    bindir: str | None = None,
    *,
    versioned: str = VERSIONED_BINDIRS,
    fallbacks: Sequence[str] = FALLBACK_BINDIRS,
) -> Path:
    """Directory holding ``initdb`` and ``pg_ctl``.

    ``bindir`` (the directory, or ``pg_ctl`` itself, as ``--mw-postgres-exec`` gives it) is the only place looked at
    when given; otherwise pg_config's ``--bindir``, ``pg_ctl`` on $PATH, ``versioned`` (newest first) and then
    ``fallbacks``. ``ExecutableNotFound`` lists every place, with why it did not do.
    """
    if bindir is not None:
        names_a_binary = os.path.isfile(bindir) or os.path.basename(bindir.rstrip("/")) in BINARIES
        given = os.path.dirname(bindir) if names_a_binary else bindir
        label = bindir if given == bindir else f"{bindir} (its directory {given})"
        places: list[tuple[str | None, str]] = [(given, label)]
    else:
        places = _search(versioned, fallbacks)
    tried: list[str] = []
    checked: set[str] = set()
    for directory, label in places:
        if directory is None:
            tried.append(label)
            continue
        if directory in checked:
            continue
        checked.add(directory)
        problem = _missing(directory)
        if not problem:
            return Path(directory)
        tried.append(f"{label} ({problem})")
    raise ExecutableNotFound("initdb/pg_ctl", tried, HINT)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from ``/proc``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def unprivileged_user(run_as: str | None = None) -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: None when not root (run as ourselves), else ``run_as``/postgres/nobody."""
    if os.geteuid() != 0:
        return None
    names: Sequence[str] = [run_as] if run_as is not None else ["postgres", "nobody"]
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServerUnavailable(f"running as root and no unprivileged user to run PostgreSQL as (tried {', '.join(names)})")


class PostgresProcess(StartStop):
    """Create a cluster with ``initdb``, start it with ``pg_ctl`` on ``host``:port and remove it all on ``stop``.

    The unix socket lives in the temp dir so it never collides with a system server's ``/var/run/postgresql``.
    """

    kind: Kind = "postgres"
    provider: ProviderName = "process"

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        bindir: str | None = None,
        user: str = "postgres",
        run_as: str | None = None,
        startup_timeout: float = 30.0,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.requested_port = port
        self.host = host
        self.bindir = bindir
        self.user = user
        self.run_as = run_as
        self.startup_timeout = startup_timeout
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self.port: int | None = None
        self._tmpdir: Path | None = None
        self._account: pwd.struct_passwd | None = None
        self._bin: Path | None = None

    @property
    def dsn(self) -> str:
        if self.port is None:
            raise RuntimeError("PostgresProcess is not started")
        return f"postgresql://{self.user}@{self.host}:{self.port}/postgres"

    url = dsn

    @property
    def label(self) -> str:
        return f"process {self.bindir or 'initdb/pg_ctl'}"

    @property
    def datadir(self) -> Path:
        assert self._tmpdir is not None
        return self._tmpdir / "data"

    def start(self) -> ServerSpec:
        self._bin = find_postgres_bindir(self.bindir)
        self._account = unprivileged_user(self.run_as)
        self._tmpdir = Path(tempfile.mkdtemp(prefix="mw-pg-"))
        try:
            if self._account is not None:
                os.chown(self._tmpdir, self._account.pw_uid, self._account.pw_gid)
            self._run(
                "initdb", "-D", str(self.datadir), "-U", self.user, "-A", "trust",
                "--no-sync", "--encoding=UTF8", "--locale=C",
            )  # fmt: skip
            failure = ""
            for _ in range(1 if self.requested_port is not None else 3):
                port = self.requested_port if self.requested_port is not None else free_port(self.host)
                failure = self._try_start(port)
                if not failure:
                    return ServerSpec("postgres", self.dsn, "process", f"{self._bin} as {self._who()}")
            raise ServerUnavailable(f"PostgreSQL did not start: {failure}")
        except BaseException:
            self.stop()
            raise

    def _who(self) -> str:
        return self._account.pw_name if self._account is not None else "current user"

    def _run(self, exe: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool, as the unprivileged account when we are root; failures carry its output."""
        assert self._bin is not None and self._tmpdir is not None
        kwargs: dict[str, object] = {}
        if self._account is not None:
            kwargs = {"user": self._account.pw_uid, "group": self._account.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C"}
        if self._account is not None:
            env["HOME"] = str(self._tmpdir)
        result: subprocess.CompletedProcess[str] = subprocess.run(
            [str(self._bin / exe), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self._tmpdir,
            env=env,
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise ServerUnavailable(f"{exe} failed (exit {result.returncode}): {' | '.join(output)}")
        return result

    def _try_start(self, port: int) -> str:
        """Start on ``port``; return "" once it accepts connections, else the reason (the cluster is left stopped)."""
        assert self._tmpdir is not None
        settings = {
            **self.settings,
            "listen_addresses": f"'{self.host}'",
            "port": str(port),
            "unix_socket_directories": f"'{self._tmpdir}'",
        }
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        log = self._tmpdir / "postgres.log"
        try:
            self._run(
                "pg_ctl", "-D", str(self.datadir), "-l", str(log), "-w", "-t", str(int(self.startup_timeout)), "start",
                timeout=self.startup_timeout + 10,
            )  # fmt: skip
            self.port = port
            wait_until_ready(lambda: postgres_ping(self.dsn), 5.0)
        except Exception as exc:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
            self._pg_stop()
            self.port = None
            return f"{exc}; log: {' | '.join(tail) or '(empty)'}"
        return ""

    def _pg_stop(self) -> None:
        if self._tmpdir is None or not (self.datadir / "postmaster.pid").exists():
            return
        try:
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop", timeout=30)
        except (ServerUnavailable, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop", timeout=30)

    @property
    def pid(self) -> int:
        """The postmaster's process id (from ``postmaster.pid``): the leader of the process group of every backend."""
        if self._tmpdir is None or self.port is None:
            raise RuntimeError("PostgresProcess is not started")
        return int((self.datadir / "postmaster.pid").read_text().split()[0])

    def pause(self) -> None:
        """SIGSTOP the postmaster, then each of its children: the backends too (each its own process group, so not
        one signal to a group), so open connections stop answering, not only new ones. Linux (reads ``/proc``)."""
        postmaster = self.pid
        os.kill(postmaster, signal.SIGSTOP)  # first: it forks no new backend meanwhile
        children = _children(postmaster)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGSTOP)
        wait_stopped(postmaster, children)

    def resume(self) -> None:
        """SIGCONT every child, then the postmaster, after :meth:`pause`: every connection answers again."""
        postmaster = self.pid
        for child in _children(postmaster):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGCONT)
        os.kill(postmaster, signal.SIGCONT)

    def kill(self) -> None:
        """Immediate shutdown (``pg_ctl -m immediate``: every process quits at once, no checkpoint), as a crash: open
        connections break and new ones are refused until :meth:`restart`.

        The cluster runs with :data:`FAST_SETTINGS` (fsync, synchronous commits and full-page writes off), under which
        an immediate shutdown was seen to lose committed rows (their WAL not replayed); a ``CHECKPOINT`` first puts
        every committed row in the data files, so the kill loses nothing committed, as on a durable server."""
        if self._tmpdir is None or self.port is None:
            raise RuntimeError("PostgresProcess is not started")
        import psycopg

        with psycopg.connect(self.dsn, connect_timeout=2, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop", timeout=30)

    def restart(self) -> None:
        """Start the same cluster again on the same port after :meth:`kill`: crash recovery replays the WAL, so every
        committed row is back."""
        if self._tmpdir is None or self.port is None or (self.datadir / "postmaster.pid").exists():
            raise RuntimeError("PostgresProcess.restart follows kill()")
        log = self._tmpdir / "postgres.log"
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-l", str(log), "-w", "-t", str(int(self.startup_timeout)), "start",
            timeout=self.startup_timeout + 10,
        )  # fmt: skip
        wait_until_ready(lambda: postgres_ping(self.dsn), 5.0)

    def stop(self) -> None:
        """Fast shutdown (disconnects clients), then remove the cluster directory."""
        try:
            if self.port is not None:
                with contextlib.suppress(OSError, RuntimeError, ValueError):
                    self.resume()  # a paused cluster cannot shut down
            self._pg_stop()
        finally:
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
            self.port = None
