"""Event ids: what the partition processed, as 60-bit hashes, so a replay is dropped.

Owns the `s<n>` records: each holds the ids of one window (or part of it) as `b"q"`,
8 bytes of big-endian newest event time, then the hashes as little-endian 64-bit
integers, under `RECORD_BUDGET` bytes (records written as JSON `[ms, [ids]]` by older
versions are still read). Invariant: `seen` is exactly the union of the hashes of the
windows kept, and a window is forgotten, hashes and record together, once the stream
time is `retention_ms` past its newest event.

Why hashes: a UUID string costs about 85 bytes and a 60-bit int 32, in a set that holds
a day of events. Two different ids share a hash with probability 2^-60 per pair: for
the 2,000,000 ids of a busy partition-day, about 2e-12 per new event of a real event
being taken for a replay. A UUID (any version) is folded from its own 128 bits, other
ids are hashed with BLAKE2b; both are stable across processes, as the changelog needs.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from typing import Any

import orjson

from .records import RECORD_BUDGET, Record, key

PREFIX = b"s"
_FORMAT = b"q"  # first byte of a binary record; a JSON record starts with "["
_MASK = (1 << 60) - 1
_PER_RECORD = (RECORD_BUDGET - 9) // 8
_SWAP = sys.byteorder != "little"  # records hold little-endian integers
_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes


def id_hash(event_id: str) -> int:
    """The 60-bit hash of an event id: folded from a UUID's 128 bits, else BLAKE2b."""
    if len(event_id) == 36 and event_id[8] == "-":
        try:
            n = int(event_id.replace("-", ""), 16)
        except ValueError:
            pass
        else:
            return (n ^ (n >> 64)) & _MASK
    return _from_bytes(_blake2b(event_id.encode(), digest_size=8).digest(), "little") & _MASK


class EventIds:
    """The hashes seen; the partition's `apply()` adds to `seen` and `new` itself (hot
    path), testing membership with `id_hash`."""

    prefix = PREFIX  # of its changelog keys
    __slots__ = ("_next", "_windows", "new", "retention_ms", "seen")

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self.seen: set[int] = set()
        self.new: list[int] = []  # hashes added since the last `changes()`, in order
        self._windows: dict[int, tuple[int, array[int]]] = {}  # n -> (newest ms, hashes)
        self._next = 0

    def add(self, event_id: str) -> None:
        """Mark an id seen (what `apply()` does inline)."""
        h = id_hash(event_id)
        self.seen.add(h)
        self.new.append(h)

    def changes(self, stream_ms: int) -> list[Record]:
        """The hashes added since the last call as `s<n>` records, each within
        RECORD_BUDGET bytes."""
        records: list[Record] = []
        new = self.new
        for start in range(0, len(new), _PER_RECORD):
            hashes = array("q", new[start : start + _PER_RECORD])
            n = self._next
            self._next += 1
            self._windows[n] = (stream_ms, hashes)
            records.append((key(PREFIX, str(n)), _encode(stream_ms, hashes)))
        new.clear()
        return records

    def load(self, name: str, value: bytes | None) -> int:
        """Apply one `s<n>` record; the newest event time it holds (0 for a tombstone)."""
        n = int(name)
        old = self._windows.pop(n, None)
        if old is not None:
            self.seen.difference_update(old[1])
        self._next = max(self._next, n + 1)
        if value is None:
            return 0
        ms, hashes = _decode(value)
        self._windows[n] = (ms, hashes)
        self.seen.update(hashes)
        return ms

    def expire(self, now_ms: int) -> list[Record]:
        """Tombstones for the windows whose newest event is older than the retention."""
        before = now_ms - self.retention_ms
        gone: list[Record] = []
        for n in [n for n, (ms, _) in self._windows.items() if ms < before]:
            self.seen.difference_update(self._windows.pop(n)[1])
            gone.append((key(PREFIX, str(n)), None))
        return gone

    def snapshot(self) -> list[int]:
        return sorted(self.seen)

    def __len__(self) -> int:
        return len(self.seen)

    def __contains__(self, event_id: Any) -> bool:
        return isinstance(event_id, str) and id_hash(event_id) in self.seen


def _encode(ms: int, hashes: array[int]) -> bytes:
    if _SWAP:
        hashes = array("q", hashes)
        hashes.byteswap()
    return _FORMAT + ms.to_bytes(8, "big") + hashes.tobytes()


def _decode(value: bytes) -> tuple[int, array[int]]:
    if value[:1] == _FORMAT:
        hashes = array("q")
        hashes.frombytes(value[9:])
        if _SWAP:
            hashes.byteswap()
        return int.from_bytes(value[1:9], "big"), hashes
    ms, ids = orjson.loads(value)  # written by a version that kept the ids themselves
    return int(ms), array("q", [id_hash(i) for i in ids])
