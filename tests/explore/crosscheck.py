"""Cross-check the L2 model against a real Redis: replay a schedule's commands and compare the answers.

A schedule's model log holds every command the runtime sent to L2, with its arguments (the same
bytes, lease tokens included), the model's answer and the virtual time. The replay sends them, in
order, to a real Redis through redis-py, with time compressed by ``scale`` (virtual seconds to real
seconds: the replay sleeps until each command's time, and every ``PX`` is scaled the same way), keys
and channels under a throwaway namespace. An answer is compared unless a key it involves expires
within ``margin_s`` (real seconds) of the command on the model's clock: Redis's clock is not ours, so
only answers clear of an expiry boundary must agree. A busy machine sends commands late, and by a
varying amount, so a key may be expired on Redis's clock and not on the model's (or the reverse):
the replay tracks each key's expiry as Redis set it (the real send window plus the scaled ``PX``) and
skips an answer whose key is on different sides of its expiry on the two clocks, or too close to tell.
A conditional command skipped that way that answered differently leaves its key unknown until a plain
``SET`` or ``DEL`` resets it.
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
    deadlines: dict[str, tuple[float, float]] = {}
    """Real (monotonic) window in which Redis expires each key, for keys set with an expiry."""
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
        virtually_expired = {k: _expired(shadow, k, entry.at) for k in keys}
        shadow.apply(entry.client, entry.command, entry.args)  # for the expiries only
        expected = entry.answer
        sent = time.monotonic()
        got = _send(client, prefix, entry, scale)
        answered = time.monotonic()
        near = near or any(
            _clocks_disagree(deadlines.get(k), virtually_expired[k], sent, answered, margin_s) for k in keys
        )
        _track(deadlines, entry, got, sent, answered, scale)
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


def _expired(shadow: ModelRedis, key: str, at: float) -> bool:
    """Whether the model's clock has ``key`` gone at ``at`` (never set, deleted or expired)."""
    entry = shadow.data.get(key)
    return entry is None or (entry.expire_at is not None and entry.expire_at <= at)


def _clocks_disagree(
    deadline: tuple[float, float] | None, virtually_expired: bool, sent: float, answered: float, margin_s: float
) -> bool:
    """Whether Redis, answering between ``sent`` and ``answered``, may see ``deadline`` otherwise than the model."""
    if deadline is None:
        return False
    earliest, latest = deadline
    if sent > latest + margin_s:
        return not virtually_expired
    if answered < earliest - margin_s:
        return virtually_expired
    return True  # too close to Redis's expiry to tell


def _track(
    deadlines: dict[str, tuple[float, float]], entry: Logged, got: Any, sent: float, answered: float, scale: float
) -> None:
    """Note where Redis's expiry of a key moved to, from what it answered."""
    c, a = entry.command, entry.args
    if c == "delete":
        for key in a:
            deadlines.pop(key, None)
    elif c == "set" and got:
        if a[2] is None:
            deadlines.pop(a[0], None)
        else:
            ttl = max(1, math.ceil(int(a[2]) * scale)) / 1000
            deadlines[a[0]] = (sent + ttl, answered + ttl)
    elif c == "pexpire" and got:
        ttl = max(1, math.ceil(int(a[1]) * scale)) / 1000
        deadlines[a[0]] = (sent + ttl, answered + ttl)


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
