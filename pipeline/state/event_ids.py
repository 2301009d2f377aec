"""Event ids: what the partition processed, as 60-bit hashes, so a replay is dropped.

Owns the `s<n>` records: each holds the ids of one window (or part of it) as `b"q"`,
8 bytes of big-endian newest event time, then the hashes as little-endian 64-bit
integers, under `RECORD_BUDGET` bytes (records written as JSON `[ms, [ids]]` by older
versions are still read). Invariant: the hashes held (`seen` and the sorted array
together) are exactly the union of the windows kept, and a window is forgotten, hashes
and record together, once the stream time is `retention_ms` past its newest event.

Why hashes: a UUID string costs about 85 bytes and a 60-bit int 32, in a set that holds
a day of events. Two different ids share a hash with probability 2^-60 per pair: for
the 2,000,000 ids of a busy partition-day, about 2e-12 per new event of a real event
being taken for a replay. A UUID (any version) is folded from its own 128 bits, other
ids are hashed with BLAKE2b; both are stable across processes, as the changelog needs.

Why two tiers: a Python set costs about 72 bytes per hash (int object and slot), so
only the recent hashes (at most `MERGE_AT` of sealed windows, plus the open window's)
live in `seen`; the rest are one sorted int64 array (8 bytes each, binary search),
screened by a bit filter so that a new event rarely pays for the search. Each window
also keeps its own array (8 bytes each), from which expiry rebuilds the sorted one.
A restore only stacks the records' arrays; the sorted array is built once, when first
needed (no Python work per id).
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from typing import Any

import numpy as np
import orjson

from .records import RECORD_BUDGET, Record, key

PREFIX = b"s"
_FORMAT = b"q"  # first byte of a binary record; a JSON record starts with "["
_MASK = (1 << 60) - 1
_PER_RECORD = (RECORD_BUDGET - 9) // 8
MERGE_AT = 1 << 15  # hashes of sealed windows kept in `seen` (2 MiB) before they join the array
_SWAP = sys.byteorder != "little"  # records hold little-endian integers
_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes
_EMPTY = np.zeros(0, np.int64)


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
    """The hashes seen; the partition's `apply()` tests `h in seen or archived(h)` and
    adds to `seen` and `new` itself (hot path)."""

    prefix = PREFIX  # of its changelog keys
    __slots__ = (
        "_bits",
        "_filter",
        "_in_set",
        "_next",
        "_sorted",
        "_stale",
        "_windows",
        "new",
        "retention_ms",
        "seen",
    )

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self.seen: set[int] = set()  # the recent hashes (see the module's docstring)
        self.new: list[int] = []  # hashes added since the last `changes()`, in order
        self._windows: dict[int, tuple[int, array[int]]] = {}  # n -> (newest ms, hashes)
        self._in_set: set[int] = set()  # windows whose hashes are in `seen`
        self._sorted = _EMPTY  # every other window's hashes, sorted
        self._bits = 0  # `_filter` has a bit per value of a hash's low `_bits` bits
        self._filter = bytearray(1)
        self._stale = False  # `_sorted` and `_filter` to be rebuilt from the windows
        self._next = 0

    def add(self, event_id: str) -> None:
        """Mark an id seen (what `apply()` does inline)."""
        h = id_hash(event_id)
        self.seen.add(h)
        self.new.append(h)

    def archived(self, h: int) -> bool:
        """Whether hash `h` is in the sorted array (the hot path asks `seen` first)."""
        if self._stale:
            self._rebuild()
        low = h & ((1 << self._bits) - 1)
        if not (self._filter[low >> 3] >> (low & 7)) & 1:
            return False
        s = self._sorted
        i = int(s.searchsorted(h))
        return i < len(s) and int(s[i]) == h

    def changes(self, stream_ms: int) -> list[Record]:
        """The hashes added since the last call as `s<n>` records, each within
        RECORD_BUDGET bytes; past MERGE_AT recent hashes, they join the sorted array."""
        records: list[Record] = []
        new = self.new
        for start in range(0, len(new), _PER_RECORD):
            hashes = array("q", new[start : start + _PER_RECORD])
            n = self._next
            self._next += 1
            self._windows[n] = (stream_ms, hashes)
            self._in_set.add(n)
            records.append((key(PREFIX, str(n)), _encode(stream_ms, hashes)))
        new.clear()
        if sum(len(self._windows[n][1]) for n in self._in_set) >= MERGE_AT:
            self._merge()
        return records

    def load(self, name: str, value: bytes | None) -> int:
        """Apply one `s<n>` record; the newest event time it holds (0 for a tombstone)."""
        n = int(name)
        self._drop(n)
        self._next = max(self._next, n + 1)
        if value is None:
            return 0
        ms, hashes = _decode(value)
        self._windows[n] = (ms, hashes)
        self._stale = True
        return ms

    def expire(self, now_ms: int) -> list[Record]:
        """Tombstones for the windows whose newest event is older than the retention."""
        before = now_ms - self.retention_ms
        gone: list[Record] = []
        for n in [n for n, (ms, _) in self._windows.items() if ms < before]:
            self._drop(n)
            gone.append((key(PREFIX, str(n)), None))
        return gone

    def _drop(self, n: int) -> None:
        old = self._windows.pop(n, None)
        if old is None:
            return
        if n in self._in_set:
            self._in_set.discard(n)
            self.seen.difference_update(old[1])
        else:
            self._stale = True

    def _merge(self) -> None:
        """The sealed windows' hashes in `seen` join the sorted array (`seen` keeps
        those of the open window, none when called from `changes()`)."""
        merged = [self._windows[n][1] for n in self._in_set]
        self._in_set.clear()
        if self._stale:
            self._rebuild()  # from every window, those just merged too
        else:
            part = np.sort(np.concatenate([np.frombuffer(h, np.int64) for h in merged]))
            joined = np.concatenate([self._sorted, part])
            joined.sort(kind="stable")  # two sorted runs: merged in linear time
            self._index(joined)
        self.seen.difference_update(*merged)

    def _rebuild(self) -> None:
        """The sorted array and its filter from the windows not in `seen`."""
        parts = [
            np.frombuffer(hashes, np.int64)
            for n, (_, hashes) in self._windows.items()
            if n not in self._in_set
        ]
        self._index(np.unique(np.concatenate(parts)) if parts else _EMPTY)
        self._stale = False

    def _index(self, hashes: np.ndarray[Any, np.dtype[np.int64]]) -> None:
        """Keep `hashes` (sorted) with a filter of 8 to 16 bits per hash: about 1 new
        event in 10 finds its bit set and pays for the binary search."""
        bits = max(16, (len(hashes) * 8).bit_length())
        marks = np.zeros(1 << bits, np.bool_)
        marks[hashes & ((1 << bits) - 1)] = True
        self._filter = bytearray(np.packbits(marks, bitorder="little").tobytes())
        self._sorted, self._bits = hashes, bits

    def snapshot(self) -> list[int]:
        if self._stale:
            self._rebuild()
        return sorted(self.seen.union(self._sorted.tolist()))

    def __len__(self) -> int:
        if self._stale:
            self._rebuild()
        return len(self.seen) + len(self._sorted)

    def __contains__(self, event_id: Any) -> bool:
        if not isinstance(event_id, str):
            return False
        h = id_hash(event_id)
        return h in self.seen or self.archived(h)


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
