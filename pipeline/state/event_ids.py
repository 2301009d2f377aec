"""Event ids: the ids of the events processed, so a replayed event is dropped.

Owns the `s<n>` records: each holds `[newest ms, ids]`, the ids of one window (or of
part of it), under `RECORD_BUDGET` bytes. Invariant: `seen` is exactly the union of the
ids of the windows kept, and a window is forgotten, ids and record together, once the
stream time is `retention_ms` past its newest event.
"""

from __future__ import annotations

from typing import Any

import orjson

from .records import RECORD_BUDGET, Record, key

PREFIX = b"s"


class EventIds:
    """The ids seen; the partition's `apply()` adds to `seen` and `new` itself (hot path)."""

    prefix = PREFIX  # of its changelog keys
    __slots__ = ("_next", "_windows", "new", "retention_ms", "seen")

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self.seen: set[str] = set()
        self.new: list[str] = []  # ids added since the last `changes()`, in order
        self._windows: dict[int, tuple[int, list[str]]] = {}  # n -> (newest ms, ids)
        self._next = 0

    def changes(self, stream_ms: int) -> list[Record]:
        """The ids added since the last call as `s<n>` records, each under RECORD_BUDGET
        bytes (a window of 100,000 UUIDs is 4 MB in one piece: more than a topic takes)."""
        records: list[Record] = []
        if not self.new:
            return records
        ids = self.new.copy()
        self.new.clear()
        start, size = 0, 0
        for i, event_id in enumerate(ids):
            size += len(event_id) + 3  # quotes and comma; measured exactly below
            if size > RECORD_BUDGET // 2 and i > start:
                self._window(ids[start:i], stream_ms, records)
                start, size = i, len(event_id) + 3
        self._window(ids[start:] if start else ids, stream_ms, records)
        return records

    def _window(self, ids: list[str], ms: int, records: list[Record]) -> None:
        value = orjson.dumps([ms, ids])
        if len(value) > RECORD_BUDGET and len(ids) > 1:  # escapes, non-ASCII: halve it
            half = len(ids) // 2
            self._window(ids[:half], ms, records)
            self._window(ids[half:], ms, records)
            return
        n = self._next
        self._next += 1
        self._windows[n] = (ms, ids)
        records.append((key(PREFIX, str(n)), value))

    def load(self, name: str, value: bytes | None) -> int:
        """Apply one `s<n>` record; the newest event time it holds (0 for a tombstone)."""
        n = int(name)
        old = self._windows.pop(n, None)
        if old is not None:
            self.seen.difference_update(old[1])
        self._next = max(self._next, n + 1)
        if value is None:
            return 0
        ms, ids = orjson.loads(value)
        self._windows[n] = (ms, ids)
        self.seen.update(ids)
        return int(ms)

    def expire(self, now_ms: int) -> list[Record]:
        """Tombstones for the windows whose newest event is older than the retention."""
        before = now_ms - self.retention_ms
        gone: list[Record] = []
        for n in [n for n, (ms, _) in self._windows.items() if ms < before]:
            self.seen.difference_update(self._windows.pop(n)[1])
            gone.append((key(PREFIX, str(n)), None))
        return gone

    def snapshot(self) -> list[str]:
        return sorted(self.seen)

    def __len__(self) -> int:
        return len(self.seen)

    def __contains__(self, event_id: Any) -> bool:
        return event_id in self.seen
