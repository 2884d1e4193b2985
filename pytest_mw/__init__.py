"""pytest-mw: the pytest plugin for Mw (entry point ``pytest_mw.plugin``).

Nothing heavy loads here, since pytest imports this package on every run. The assertion helpers are importable from
the package (``from pytest_mw import assert_ttl``) but load lazily, after the plugin has registered them for pytest's
assertion rewriting. Type checkers read the ``TYPE_CHECKING`` imports below, so every public name keeps its real
signature (``mypy --strict`` sees ``assert_ttl(m, ("a", "b"), "ten")`` as the error it is).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_mw.assertions import (
        assert_hit_ratio,
        assert_key_roundtrip,
        assert_memory_metrics,
        assert_no_double_prefix,
        assert_task_ttl,
        assert_telemetry,
        assert_tier_hits,
        assert_tiers_ordered,
        assert_ttl,
        assert_typed_keys_only,
        ttl_remaining,
    )
    from pytest_mw.fixtures import MwFactory
    from pytest_mw.recorder import KeyRecord, KeyRecorder

_LAZY = {
    "assert_hit_ratio": "pytest_mw.assertions",
    "assert_key_roundtrip": "pytest_mw.assertions",
    "assert_memory_metrics": "pytest_mw.assertions",
    "assert_no_double_prefix": "pytest_mw.assertions",
    "assert_task_ttl": "pytest_mw.assertions",
    "assert_telemetry": "pytest_mw.assertions",
    "assert_tier_hits": "pytest_mw.assertions",
    "assert_tiers_ordered": "pytest_mw.assertions",
    "assert_ttl": "pytest_mw.assertions",
    "assert_typed_keys_only": "pytest_mw.assertions",
    "ttl_remaining": "pytest_mw.assertions",
    "KeyRecorder": "pytest_mw.recorder",
    "KeyRecord": "pytest_mw.recorder",
    "MwFactory": "pytest_mw.fixtures",
}

__all__ = [
    "KeyRecord",
    "KeyRecorder",
    "MwFactory",
    "assert_hit_ratio",
    "assert_key_roundtrip",
    "assert_memory_metrics",
    "assert_no_double_prefix",
    "assert_task_ttl",
    "assert_telemetry",
    "assert_tier_hits",
    "assert_tiers_ordered",
    "assert_ttl",
    "assert_typed_keys_only",
    "ttl_remaining",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_mw' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
