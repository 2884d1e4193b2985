"""A throwaway ``redis-server`` on a free port: no persistence, its own temp dir, gone after the session."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from pytest_mw.servers.errors import ExecutableNotFound, ServerUnavailable
from pytest_mw.servers.ports import free_port
from pytest_mw.servers.readiness import redis_ping, wait_stopped, wait_until_ready
from pytest_mw.servers.spec import Kind, ProviderName, ServerSpec, StartStop

DEFAULT_REDIS_PATHS = (
    "/usr/bin/redis-server",
    "/usr/local/bin/redis-server",
    "/opt/homebrew/bin/redis-server",
    "/usr/sbin/redis-server",
)


def find_executable(executable: str | None, name: str, defaults: tuple[str, ...], hint: str) -> str:
    """Resolve ``executable`` (a path or a name on PATH), or ``name`` on PATH and then ``defaults``."""
    candidates = [executable] if executable is not None else [name, *defaults]
    tried: list[str] = []
    for candidate in candidates:
        if os.sep in candidate:
            tried.append(candidate)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        else:
            tried.append(f"{candidate} on $PATH")
            found = shutil.which(candidate)
            if found is not None:
                return found
    raise ExecutableNotFound(name, tried, hint)


def find_redis_server(executable: str | None = None) -> str:
    """Path of the ``redis-server`` binary to run; ``ExecutableNotFound`` names the paths tried."""
    return find_executable(
        executable,
        "redis-server",
        DEFAULT_REDIS_PATHS,
        "Install Redis or point --mw-redis-exec (ini: mw_redis_exec) at the binary.",
    )


class RedisProcess(StartStop):
    """Start ``redis-server`` bound to ``host`` on a free (or given) port and stop it cleanly.

    Persistence is off (``--save "" --appendonly no``) so stopping is instant and nothing outlives the run.
    """

    kind: Kind = "redis"
    provider: ProviderName = "process"

    def __init__(
        self,
        executable: str | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 10.0,
    ) -> None:
        self.executable = executable
        self.host = host
        self.requested_port = port
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: Path | None = None

    @property
    def label(self) -> str:
        return f"process {self.executable or 'redis-server'}"

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("RedisProcess is not started")
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> ServerSpec:
        executable = find_redis_server(self.executable)
        attempts = 1 if self.requested_port is not None else 3
        failure = ""
        for _ in range(attempts):
            port = self.requested_port if self.requested_port is not None else free_port(self.host)
            failure = self._try_start(executable, port)
            if not failure:
                return ServerSpec("redis", self.url, "process", f"{executable} pid {self._pid()}")
        raise ServerUnavailable(f"redis-server did not start: {failure}")

    def _pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def _try_start(self, executable: str, port: int) -> str:
        """Start on ``port``; return "" on success, else what went wrong (after cleaning up)."""
        self._tmpdir = Path(tempfile.mkdtemp(prefix="mw-redis-"))
        log = self._tmpdir / "redis.log"
        args = [
            executable,
            "--port", str(port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._tmpdir),
            "--logfile", str(log),
            "--daemonize", "no",
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.port = port
        proc = self._proc
        try:
            wait_until_ready(lambda: redis_ping(self.url, 1.0), self.startup_timeout, lambda: proc.poll() is None)
        except Exception as exc:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
            self.stop()
            return f"{exc}; log: {' | '.join(tail) or '(empty)'}"
        return ""

    @property
    def pid(self) -> int:
        """The running server's process id (changes with :meth:`restart`)."""
        if self._proc is None:
            raise RuntimeError("RedisProcess is not started")
        return self._proc.pid

    def pause(self) -> None:
        """SIGSTOP: the server stops answering but keeps its connections and data (clients time out)."""
        os.kill(self.pid, signal.SIGSTOP)
        wait_stopped([self.pid])

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`: the server answers again, its data and connections as they were."""
        os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL and reap: connections are refused until :meth:`restart` (its data is lost: persistence is off)."""
        if self._proc is None:
            raise RuntimeError("RedisProcess is not started")
        self._proc.kill()
        self._proc.wait()

    def restart(self) -> None:
        """Start again, empty, on the same port after :meth:`kill` (clients reconnect to the same URL)."""
        if self.port is None or self._proc is None or self._proc.poll() is None:
            raise RuntimeError("RedisProcess.restart follows kill()")
        port = self.port
        self.stop()
        failure = self._try_start(find_redis_server(self.executable), port)
        if failure:
            raise ServerUnavailable(f"redis-server did not restart on port {port}: {failure}")

    def stop(self) -> None:
        """SIGTERM (redis exits at once without persistence), then remove the temp dir."""
        if self._proc is not None:
            if self._proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._proc.pid, signal.SIGCONT)  # a paused server cannot handle SIGTERM
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        self.port = None
