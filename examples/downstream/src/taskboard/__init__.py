"""taskboard: an agent-side view of tasks and agent profiles, cached in Mw."""

from taskboard.board import TaskBoard

__all__ = ["TaskBoard"]
