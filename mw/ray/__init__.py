"""Mw on Ray: the node tier as one actor per Ray node, and a base class for agents that are Ray actors.

Ray is optional (``pip install 'pytest-mw[ray]'``): only this package imports it, and ``import mw`` never
imports this package. See ``docs/ray.md``.

* :class:`RayNodeL1` - the L1 an agent plugs into ``MwManager(..., l1=...)``; the data lives in the
  node's :class:`NodeCache` actor, shared by every agent process on that Ray node.
* :class:`MwAgent` / :class:`AsyncMwAgent` - actor bases owning an ``MwManager``, with the origin
  system's task helpers and ``heartbeat()``.
* :func:`env_vars` - an ``MwConfig`` as the ``MW_*`` variables a ``runtime_env`` carries to actors.
"""

from __future__ import annotations

try:
    import ray as _ray  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("mw.ray needs Ray: pip install 'pytest-mw[ray]' (or 'ray>=2.9')") from exc

from mw.ray.agent import AsyncMwAgent, MwAgent, agent_options
from mw.ray.env import env_vars
from mw.ray.node_cache import (
    RAY_NAMESPACE,
    NodeCache,
    RayNodeL1,
    current_node_id,
    kill_node_caches,
    node_cache_name,
)

__all__ = [
    "RAY_NAMESPACE",
    "AsyncMwAgent",
    "MwAgent",
    "NodeCache",
    "RayNodeL1",
    "agent_options",
    "current_node_id",
    "env_vars",
    "kill_node_caches",
    "node_cache_name",
]
