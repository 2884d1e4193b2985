"""The embedded L2's client (:func:`mw.tiers.l2.embedded_client`): redis-py on one connection to fakeredis, commands
sent straight down it, and the serial stand-in for a pipeline. What it must keep: every reply goes to its own
command, and a batch of commands has a pipeline's effects and errors."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from mw.tiers.l2 import embedded_client, embedded_server, pipeline


@pytest.fixture
def client() -> Any:
    c = embedded_client(embedded_server())
    yield c
    c.close()


def test_a_command_run_inside_a_command_gets_its_own_reply(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A finalizer the garbage collector runs mid-command (a dropped plan's lease release) is a second command on
    the same thread while the one connection waits for the first one's reply."""
    client.set("emb:outer", b"outer")
    client.set("emb:inner", b"inner")
    conn = client.connection
    read = conn.read_response
    nested: list[Any] = []

    def read_after_a_nested_command(*args: Any, **kwargs: Any) -> Any:
        if not nested:
            nested.append(None)
            nested[0] = client.get("emb:inner")
        return read(*args, **kwargs)

    monkeypatch.setattr(conn, "read_response", read_after_a_nested_command)
    assert client.get("emb:outer") == b"outer"
    assert nested == [b"inner"]
    monkeypatch.undo()
    assert client.get("emb:outer") == b"outer", "the shared connection still pairs commands and replies"


def _batch(pipe: Any) -> None:
    pipe.set("emb:b", b"v", px=-5)  # refused by the server: invalid expire time
    pipe.delete("emb:a")  # still runs
    pipe.publish("emb:channel", b"m")


def test_the_serial_batch_has_a_pipelines_effects_and_error(client: Any) -> None:
    pooled = redis.Redis(connection_pool=client.connection_pool)  # redis-py's own pipeline on the same server
    outcomes = []
    for pipe in (pipeline(client, embedded=True), pooled.pipeline(transaction=False)):
        client.set("emb:a", b"1")
        _batch(pipe)
        with pytest.raises(redis.ResponseError) as raised:
            pipe.execute()
        outcomes.append((client.exists("emb:a"), client.exists("emb:b"), "invalid expire time" in str(raised.value)))
    assert outcomes == [(0, 0, True), (0, 0, True)], "every command ran, then the first error was raised"
