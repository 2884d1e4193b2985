"""pytest-mw: the pytest plugin for Mw (entry point ``pytest_mw.plugin``).

Kept empty on purpose: pytest imports this package for every run, so nothing heavy may load here.
"""
