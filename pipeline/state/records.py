"""Changelog records of the partition state: the one key format every store uses.

A record is `(key, value)`; a `None` value is a tombstone. A key is one prefix byte
naming the store, then the entry's name in UTF-8: `c<cart id>` (carts.py), `s<n>`
(event_ids.py), `o<order id>` (orders.py), `i<email>` (identities.py),
`b<visitor>` (triggers.py), and `w` alone, the seal marks the run loop writes.
Invariant: no record the state writes is larger than `RECORD_BUDGET` bytes.
"""

from __future__ import annotations

from typing import Protocol

Record = tuple[bytes, bytes | None]

RECORD_BUDGET = 256_000  # bytes: no changelog record the state writes is larger
MARKS_KEY = b"w"


def key(prefix: bytes, name: str) -> bytes:
    """The changelog key of entry `name` of the store with `prefix`."""
    return prefix + name.encode()


def split(key: bytes) -> tuple[bytes, str]:
    """A changelog key as (store prefix, entry name)."""
    return key[:1], key[1:].decode()


class Store(Protocol):
    """What every store has: its prefix and `load`. Each also has `changes()` (the
    records of what changed since the last call), `expire(now_ms)` (tombstones for what
    retention let go) and `snapshot()` (its data as plain values)."""

    prefix: bytes

    def load(self, name: str, value: bytes | None) -> int:
        """Apply the record of entry `name`; the newest event time it holds, else 0."""
        ...
