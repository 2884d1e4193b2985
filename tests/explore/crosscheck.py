"""Cross-check the L2 model against a real Redis: replay a schedule's commands and compare the answers.

A schedule's model log holds every command the runtime sent to L2, with its arguments (the same
bytes, lease tokens included), the model's answer and the virtual time. The replay sends them, in
order, to a real Redis through redis-py, with time compressed by ``scale`` (virtual seconds to real
seconds: the replay sleeps until each command's time, and every ``PX`` is scaled the same way), keys
and channels under a throwaway namespace. An answer is compared unless a key it involves expires
within ``margin_s`` (real seconds) of the command on the model's clock: Redis's clock is not ours, so
only answers clear of an expiry boundary must agree. A conditional command skipped that way that
answered differently leaves its key unknown until a plain ``SET`` or ``DEL`` resets it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from .model import Logged, ModelRedis, VirtualTime

WRITES = ("set", "delete", "pexpire")


@dataclass
class Crosscheck:
    compared: int = 0
    skipped: int = 0
    mismatches: list[str] = field(default_factory=list)


def _keys(entry: Logged) -> list[str]:
    c, a = entry.command, entry.args
    if c == "mget":
        return list(a[0])
    if c == "delete":
        return list(a)
    if c in ("get", "set", "pexpire", "pttl"):
        return [a[0]]
    return []


def _normal(command: str, answer: Any) -> Any:
    if command == "set":
        return bool(answer)
    if command == "pexpire":
        return bool(answer)
    if command == "pttl":
        return "ttl" if answer is not None and answer >= 0 else answer
    return answer


def replay(log: list[Logged], client: Any, prefix: str, *, scale: float = 0.05, margin_s: float = 0.015) -> Crosscheck:
    """Replay ``log`` on ``client`` (a ``redis.Redis``); keys get ``prefix`` in front."""
    out = Crosscheck()
    if not log:
        return out
    shadow_time = VirtualTime(log[0].at)
    shadow = ModelRedis(shadow_time)
    margin = margin_s / scale
    unknown: set[str] = set()
    start_virtual, start_real = log[0].at, time.monotonic()
    for n, entry in enumerate(log):
        if entry.command in ("keys",):
            continue
        shadow_time.now = entry.at
        keys = _keys(entry)
        near = any(
            (e := shadow.data.get(k)) is not None and e.expire_at is not None and abs(e.expire_at - entry.at) < margin
            for k in keys
        )
        wait = start_real + (entry.at - start_virtual) * scale - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        shadow.apply(entry.client, entry.command, entry.args)  # for the expiries only
        expected = entry.answer
        got = _send(client, prefix, entry, scale)
        same = _normal(entry.command, got) == _normal(entry.command, expected)
        if entry.command == "set" and not entry.args[3]:
            unknown.discard(entry.args[0])
        if entry.command == "delete":
            unknown.difference_update(entry.args)
        if near or any(k in unknown for k in keys):
            out.skipped += 1
            if not same and entry.command in WRITES:
                unknown.update(keys)
            continue
        out.compared += 1
        if not same:
            out.mismatches.append(
                f"#{n} t+{entry.at - start_virtual:.3f}s {entry.command} {entry.args!r:.120}: "
                f"model {expected!r:.80}, Redis {got!r:.80}"
            )
    return out


def _send(client: Any, prefix: str, entry: Logged, scale: float) -> Any:
    c, a = entry.command, entry.args
    if c == "get":
        return client.get(prefix + a[0])
    if c == "mget":
        return client.mget([prefix + k for k in a[0]])
    if c == "set":
        key, value, px, nx = a
        scaled = None if px is None else max(1, math.ceil(int(px) * scale))
        return client.set(prefix + key, value, px=scaled, nx=nx)
    if c == "delete":
        return client.delete(*[prefix + k for k in a])
    if c == "pexpire":
        return client.pexpire(prefix + a[0], max(1, math.ceil(int(a[1]) * scale)))
    if c == "pttl":
        return client.pttl(prefix + a[0])
    if c == "publish":
        channel = a[0].decode() if isinstance(a[0], bytes) else str(a[0])
        return client.publish(prefix + channel, a[1])
    raise NotImplementedError(c)
