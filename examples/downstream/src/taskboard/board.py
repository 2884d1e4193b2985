"""What a downstream agent does with Mw: publish its profile, cache task rows, report heartbeats.

The manager is passed in rather than built here, so tests hand it the ``mw`` fixture and production code hands it
``MwManager(organ_id)`` configured from ``MW_*`` variables.
"""

from __future__ import annotations

from typing import Any

from mw import MwManager

PROFILE_TTL_S = 300.0


class TaskBoard:
    def __init__(self, manager: MwManager) -> None:
        self.mw = manager

    def publish_profile(self, agent_id: str, profile: dict[str, Any]) -> None:
        """Visible to every agent for ``PROFILE_TTL_S`` seconds (typed global write, as the checklist asks)."""
        self.mw.set_global_item_typed("profile", "agent", agent_id, profile, ttl_s=PROFILE_TTL_S)

    def profile(self, agent_id: str) -> dict[str, Any] | None:
        return self.mw.get_item_typed("profile", "agent", agent_id)  # type: ignore[no-any-return]

    def track(self, row: dict[str, Any]) -> float:
        """Store the task in the long-term store and cache it; returns the TTL the status table gave it."""
        self.mw.mlt.put_task(row)
        return self.mw.cache_task_row(row)

    def task(self, task_id: str) -> dict[str, Any] | None:
        return self.mw.get_task(task_id)

    def finish(self, task_id: str, status: str = "completed") -> dict[str, Any] | None:
        """Change the status in Mlt and drop the cached row from every tier of every agent."""
        return self.mw.update_task_status(task_id, status)

    def remember(self, note_id: str, text: str) -> None:
        """Private scratch notes stay in this agent's L0 (no TTL there)."""
        self.mw.set_item(note_id, text)

    def heartbeat(self) -> dict[str, Any]:
        return {"organ_id": self.mw.organ_id, "memory_metrics": self.mw.memory_metrics()}
