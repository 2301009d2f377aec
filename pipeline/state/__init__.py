"""Partition state: small changelogged stores and the triggers; pure, no I/O."""
