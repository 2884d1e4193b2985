"""TLS and ACL on a real TLS-only redis-server (the plugin's ``mw_redis_tls_server``: a throwaway CA, client
certificates required, the runtime as a least-privilege ACL user): the ``MW_REDIS_*`` TLS settings, the shared
context, the handshake's deadline, and the ACL holding (what the runtime's user may not do, it cannot)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
import redis

import mw
from mw import MwConfig, MwManager
from mw.acl import RUNTIME_COMMANDS, acl_rules, acl_setuser
from mw.errors import ConfigError
from mw.tiers.tls import HandshakeDeadlineSSLConnection, shared_context

pytestmark = pytest.mark.mw_real_servers


def split_tls(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its query, and the TLS files the query named."""
    parts = urlsplit(url)
    files = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return urlunsplit(parts._replace(query="")), files


@pytest.fixture
def tls_env(mw_redis_tls: str, mw_namespace: str) -> Iterator[dict[str, str]]:
    """The environment a deployment would set: a bare ``rediss://`` URL and the three file variables."""
    bare, files = split_tls(str(mw_redis_tls))
    yield {
        "MW_REDIS_URL": bare,
        "MW_REDIS_CA_CERT": files["ssl_ca_certs"],
        "MW_REDIS_CLIENT_CERT": files["ssl_certfile"],
        "MW_REDIS_CLIENT_KEY": files["ssl_keyfile"],
        "MW_NAMESPACE": mw_namespace,
    }
    mw.close_all()


def test_the_tls_variables_reach_a_tls_only_server(tls_env: dict[str, str]) -> None:
    config = MwConfig.from_env(tls_env)
    assert config.redis_tls() == {
        "ssl_ca_certs": tls_env["MW_REDIS_CA_CERT"],
        "ssl_certfile": tls_env["MW_REDIS_CLIENT_CERT"],
        "ssl_keyfile": tls_env["MW_REDIS_CLIENT_KEY"],
    }
    a, b = MwManager("a", config), MwManager("b", config.replace(l1_max_items=999), node="n2")
    a.set_global_item_typed("doc", "s", "1", {"v": 1})
    assert b.get_item_typed("doc", "s", "1") == {"v": 1}, "b read it from the TLS server's L2"
    assert a.del_global_item_typed("doc", "s", "1") is True
    deadline = time.monotonic() + 30  # b is another cluster: the delete reaches it over the bus, asynchronously
    while b.get_item_typed("doc", "s", "1") is not None:
        assert time.monotonic() < deadline, "the delete never reached b over the TLS server's bus"
        time.sleep(0.01)


def test_without_the_client_certificate_the_server_refuses_and_l2_degrades(tls_env: dict[str, str]) -> None:
    env = {k: v for k, v in tls_env.items() if k not in ("MW_REDIS_CLIENT_CERT", "MW_REDIS_CLIENT_KEY")}
    m = MwManager("a", MwConfig.from_env(env, tier_retry_s=0.0))
    m.mlt.put_item("doc", "s", "1", "from-mlt")
    assert m.get_item_typed("doc", "s", "1") == "from-mlt", "a refused handshake is an L2 outage, not a crash"
    assert m.telemetry.l2_errors >= 1


@pytest.mark.parametrize(
    ("changes", "variable", "reason"),
    [
        ({"MW_REDIS_URL": "redis://127.0.0.1:6379/0"}, "MW_REDIS_CA_CERT", "rediss://"),
        ({"MW_REDIS_CA_CERT": "/nonexistent/ca.crt"}, "MW_REDIS_CA_CERT", "no such readable file"),
        ({"MW_REDIS_CLIENT_KEY": ""}, "MW_REDIS_CLIENT_KEY", "set together"),
    ],
)
def test_bad_tls_settings_are_config_errors(
    tls_env: dict[str, str], changes: dict[str, str], variable: str, reason: str
) -> None:
    with pytest.raises(ConfigError, match=reason) as caught:
        MwConfig.from_env({**tls_env, **changes})
    assert caught.value.variable == variable


@pytest.mark.parametrize(
    ("url_query", "reason"),
    [("?ssl_cert_reqs=none", "checking off"), ("?ssl_check_hostname=false", "checking off")],
)
def test_a_url_that_turns_verification_off_is_refused(tls_env: dict[str, str], url_query: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        MwConfig.from_env({**tls_env, "MW_REDIS_URL": tls_env["MW_REDIS_URL"] + url_query})


def test_tls_arguments_on_a_plain_url_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs rediss://"):
        MwConfig.from_env({"MW_REDIS_URL": "redis://h:1/0?ssl_ca_certs=/ca.pem"})


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf"])
def test_a_connect_deadline_must_be_positive_and_finite(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MwConfig.from_env({"MW_REDIS_URL": "redis://h:1/0", "MW_REDIS_CONNECT_TIMEOUT_S": bad})
    assert caught.value.variable == "MW_REDIS_CONNECT_TIMEOUT_S"


def test_connect_timeout_has_a_floor_on_tls_only(tls_env: dict[str, str]) -> None:
    assert MwConfig.from_env(tls_env).connect_timeout_s == 2.0
    assert MwConfig.from_env({**tls_env, "MW_REDIS_CONNECT_TIMEOUT_S": "0.3"}).connect_timeout_s == 0.3
    assert MwConfig.from_env({"MW_REDIS_URL": "redis://h:1/0"}).connect_timeout_s == 0.5
    assert MwConfig.from_env({**tls_env, "MW_REDIS_TIMEOUT_S": "0"}).connect_timeout_s == 0  # "no deadline" stays


def test_connections_share_one_context_until_a_file_changes(mw_redis_tls: str, tmp_path: Path) -> None:
    bare, files = split_tls(str(mw_redis_tls))
    copies = {}
    for name, path in files.items():
        copies[name] = tmp_path / Path(path).name
        copies[name].write_bytes(Path(path).read_bytes())
    query = "&".join(f"{k}={v}" for k, v in copies.items())
    pool = redis.ConnectionPool.from_url(f"{bare}?{query}", connection_class=HandshakeDeadlineSSLConnection)
    conns = [pool.make_connection() for _ in range(3)]
    try:
        for conn in conns:
            conn.connect()
        assert len({id(shared_context(conn)) for conn in conns}) == 1, "one context for equal settings"
        before = shared_context(conns[0])
        ca = copies["ssl_ca_certs"]
        ca.write_bytes(ca.read_bytes())  # a rotated file (same content, new mtime)
        stamp = ca.stat().st_mtime_ns + 10_000_000
        os.utime(ca, ns=(stamp, stamp))
        assert shared_context(conns[0]) is not before, "a changed file builds a new context"
    finally:
        for conn in conns:
            conn.disconnect()
        pool.disconnect()


class SlowStart:
    """A TCP proxy that holds every new connection for ``hold_s`` before relaying it to the TLS server."""

    def __init__(self, target: tuple[str, int], hold_s: float) -> None:
        self.target, self.hold_s = target, hold_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            relay = threading.Thread(target=self._relay, args=(client,), daemon=True)
            self.threads.append(relay)
            relay.start()

    def _relay(self, client: socket.socket) -> None:
        time.sleep(self.hold_s)
        with client, socket.create_connection(self.target) as upstream:
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join(timeout=30)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not, on Linux)
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=30)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until either end closes, then shut both down (the other pump ends too)."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    for end in (src, dst):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)


class CommandTimeoutHandshake(HandshakeDeadlineSSLConnection):
    """The defect the runtime's class fixes (redis-py before 8.2): the handshake under the command timeout."""

    def handshake_timeout(self) -> float | None:
        return self.socket_timeout


@pytest.mark.parametrize(
    ("connection_class", "connects"), [(HandshakeDeadlineSSLConnection, True), (CommandTimeoutHandshake, False)]
)
def test_the_handshake_gets_the_connect_deadline_not_the_command_timeout(
    mw_redis_tls: str, connection_class: Any, connects: bool
) -> None:
    """The handshake waits ``hold_s`` for the server; the command timeout is a tenth of it, the connect deadline
    far longer. The runtime's class connects; one that handshakes under the command timeout times out (the test
    can fail). redis-py 8.2 fixed its own class, which the runtime still replaces for older versions."""
    parts = urlsplit(str(mw_redis_tls))
    proxy = SlowStart((parts.hostname or "127.0.0.1", parts.port or 0), hold_s=0.5)
    url = urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.port}", f":{proxy.port}")))
    client = redis.Redis.from_url(
        url.replace("127.0.0.1", "localhost"),
        socket_timeout=0.05,
        socket_connect_timeout=30,
        connection_class=connection_class,
    )
    try:
        if connects:
            assert client.ping() is True
        else:
            with pytest.raises(redis.exceptions.TimeoutError):
                client.ping()
    finally:
        client.close()
        proxy.close()


def test_the_runtime_user_has_only_the_runtime_commands(mw_redis_tls: str, mw_redis_tls_server: Any) -> None:
    """The least-privilege user: its namespace only, no admin command; the ACL the server runs is mw.acl's."""
    user = redis.Redis.from_url(str(mw_redis_tls))
    admin = redis.Redis.from_url(mw_redis_tls_server.admin)
    try:
        assert user.set("mwt:acl-probe", b"1") and user.delete("mwt:acl-probe") == 1
        for forbidden in (
            lambda: user.set("elsewhere", b"1"),
            lambda: user.publish("elsewhere", b"1"),
            lambda: user.flushall(),
            lambda: user.config_get("*"),
            lambda: user.keys("*"),
            lambda: user.client_kill_filter(_type="pubsub"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                forbidden()
        rules = admin.acl_getuser("mw")
        allowed = {c[1:] for c in rules["commands"] if c.startswith("+")}
        if "+@transaction" in rules["categories"]:  # Redis folds MULTI/EXEC/DISCARD into their category
            allowed |= {"multi", "exec", "discard"}
        assert "-@all" in rules["categories"] and allowed == set(RUNTIME_COMMANDS)
        assert rules["keys"] == ["~mwt:*"] and rules["channels"] == ["&mwt:*"]
    finally:
        user.close()
        admin.close()


def test_acl_rules_and_setuser_reject_bad_input() -> None:
    assert acl_rules("")[1:4] == ["~*", "resetchannels", "&*"]
    assert acl_rules("prod")[1] == "~prod:*"
    with pytest.raises(ConfigError, match="one word"):
        acl_setuser("two words", "pw", "prod")
    with pytest.raises(ConfigError) as caught:
        acl_setuser("mw", "has space", "prod")
    assert "has space" not in str(caught.value)
