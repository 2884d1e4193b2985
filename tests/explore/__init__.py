"""The explorer: the read-through protocol under a deterministic scheduler, a virtual clock and faults."""
