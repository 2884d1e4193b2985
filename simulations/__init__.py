"""mw-sim: a SimPy load simulator that drives the real Mw runtime and checks the deployment checklist's targets.

N agents (each a real :class:`mw.MwManager`) on M simulated nodes share one L2 and one Mlt; the runtime's clock is
SimPy's ``env.now``, so an hour of TTLs runs in seconds and a seed reproduces the numbers. See ``docs/simulator.md``.
"""

from __future__ import annotations

from simulations.scenario import Scenario, load_scenario

__all__ = ["Scenario", "load_scenario"]
