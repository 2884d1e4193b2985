"""What a TTL may be: one check for every public method and setting that takes one.

A TTL is a finite number of seconds in ``[0, MAX_TTL_S]`` (0: do not cache). Anything else (negative,
``nan``, ``inf``, a bool, ``1e17``) is a :class:`~mw.errors.ConfigError` naming the value before any
tier is touched: Redis refuses an expiry it cannot hold (``SET ... PX 1e20``), and a refusal halfway
through a write would leave the tiers disagreeing.
"""

from __future__ import annotations

import math

from mw.errors import ConfigError

MAX_TTL_S = 10 * 365 * 24 * 3600.0
"""Ten years. Longer is a unit mistake (milliseconds passed as seconds) more often than an intent."""


def check_ttl(ttl_s: object, name: str = "ttl_s") -> float:
    """``ttl_s`` as a float if it is a usable TTL, else :class:`~mw.errors.ConfigError` naming ``name`` and it."""
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)):
        raise ConfigError(name, ttl_s, "expected a number of seconds")
    try:
        ttl = float(ttl_s)
    except OverflowError:
        ttl = math.inf
    if not 0 <= ttl <= MAX_TTL_S:  # nan fails both comparisons
        # A huge int is described, not shown: its repr can exceed Python's digit limit.
        shown = f"<int of {ttl_s.bit_length()} bits>" if isinstance(ttl_s, int) and ttl_s.bit_length() > 128 else ttl_s
        limits = f"[0, {MAX_TTL_S:.0f}] (MAX_TTL_S, 10 years; 0: do not cache)"
        raise ConfigError(name, shown, f"expected a finite number of seconds in {limits}")
    return ttl
