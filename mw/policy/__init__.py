"""Eviction policies for the in-process cache tiers."""

from mw.policy.s3fifo import S3FIFO, Entry

__all__ = ["S3FIFO", "Entry"]
