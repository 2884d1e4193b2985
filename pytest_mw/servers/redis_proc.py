"""A throwaway ``redis-server`` on a free port: no persistence, its own temp dir, gone after the session."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from pytest_mw.servers.errors import ExecutableNotFound, ServerUnavailable
from pytest_mw.servers.ports import free_port
from pytest_mw.servers.readiness import redis_ping, wait_stopped, wait_until_ready
from pytest_mw.servers.spec import Kind, ProviderName, ServerSpec, StartStop
from pytest_mw.servers.tls import TlsFiles, make_tls_files

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

    ``tls=True``: TLS only (no plain port), client certificates required, a throwaway CA (:mod:`.tls`), and ACL
    users instead of the open default user: ``url`` names the runtime's least-privilege user
    (:func:`mw.acl.acl_rules` on ``acl_namespace``), ``admin_url`` an admin. Both URLs carry the CA and the client
    certificate as redis-py query arguments, so any redis-py client connects with the URL alone.
    """

    kind: Kind = "redis"
    provider: ProviderName = "process"

    def __init__(
        self,
        executable: str | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 10.0,
        *,
        tls: bool = False,
        acl_namespace: str = "mwt",
    ) -> None:
        self.executable = executable
        self.tls = tls
        self.acl_namespace = acl_namespace
        self.tls_files: TlsFiles | None = None
        self._passwords = {"mw": secrets.token_hex(16), "mw-admin": secrets.token_hex(16)}
        self.host = host
        self.requested_port = port
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._args: list[str] = []
        """The last start's command line (:meth:`restart` runs it again)."""
        self._tmpdir: Path | None = None

    @property
    def label(self) -> str:
        return f"process {self.executable or 'redis-server'}{' (TLS, ACL users)' if self.tls else ''}"

    @property
    def url(self) -> str:
        return self._url("mw")

    @property
    def admin_url(self) -> str:
        return self._url("mw-admin")

    def _url(self, user: str) -> str:
        if self.port is None:
            raise RuntimeError("RedisProcess is not started")
        if not self.tls:
            return f"redis://{self.host}:{self.port}/0"
        assert self.tls_files is not None
        return f"rediss://{user}:{self._passwords[user]}@{self.host}:{self.port}/0?{self.tls_files.client_query()}"

    def start(self) -> ServerSpec:
        executable = find_redis_server(self.executable)
        attempts = 1 if self.requested_port is not None else 3
        failure = ""
        for _ in range(attempts):
            port = self.requested_port if self.requested_port is not None else free_port(self.host)
            failure = self._try_start(executable, port)
            if not failure:
                admin = self.admin_url if self.tls else ""
                return ServerSpec("redis", self.url, "process", f"{executable} pid {self._pid()}", admin_url=admin)
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
        if self.tls:
            try:
                args += self._tls_args(port)
            except BaseException:  # no throwaway CA key left behind in the temp dir
                self.stop()
                raise
        self._args = args
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.port = port
        proc = self._proc
        try:
            wait_until_ready(lambda: redis_ping(self.admin_url, 1.0), self.startup_timeout, lambda: proc.poll() is None)
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
        wait_stopped(self.pid)

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
        """Start again, empty, on the same port after :meth:`kill`, with the same arguments and files (TLS
        certificates, ACL users), so clients reconnect to the same URL."""
        if self.port is None or self._proc is None or self._proc.poll() is None or not self._args:
            raise RuntimeError("RedisProcess.restart follows kill()")
        self._proc = proc = subprocess.Popen(self._args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            wait_until_ready(lambda: redis_ping(self.admin_url, 1.0), self.startup_timeout, lambda: proc.poll() is None)
        except Exception as exc:
            raise ServerUnavailable(f"redis-server did not restart on port {self.port}: {exc}") from exc

    def _tls_args(self, port: int) -> list[str]:
        """TLS on ``port`` and no plain port; the ACL file: default user off, an admin, the runtime's user."""
        from mw.acl import acl_setuser  # here: importing the plugin loads no runtime

        assert self._tmpdir is not None
        self.tls_files = files = make_tls_files(self._tmpdir)
        runtime = acl_setuser("mw", self._passwords["mw"], self.acl_namespace)[2:]
        users = [
            "user default off",
            f"user mw-admin on >{self._passwords['mw-admin']} ~* &* +@all",
            "user " + " ".join(runtime),
        ]
        acl = self._tmpdir / "users.acl"
        with open(os.open(acl, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:  # never readable by others
            out.write("\n".join(users) + "\n")
        return [
            "--port", "0",
            "--tls-port", str(port),
            "--tls-cert-file", str(files.server_cert),
            "--tls-key-file", str(files.server_key),
            "--tls-ca-cert-file", str(files.ca_cert),
            "--tls-auth-clients", "yes",
            "--aclfile", str(acl),
        ]  # fmt: skip

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
