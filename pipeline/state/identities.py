"""Identities: the email Journey was last told (by a Track) for each cartless visitor.

Owns the `i<email>` records (value: `[email, tracked ms]`). A cart's email lives in the
cart itself (cart.py); `i<cart id>` records (value `[email, null]`), as written before,
are still read: they wait in `legacy` until the restore ends, when the partition state
moves each into its cart and tombstones the old record. Invariant: a visitor's identity
expires `retention_ms` after it was tracked.
"""

from __future__ import annotations

import orjson

from ..source.identity import email_hash
from .records import Record, key

PREFIX = b"i"


class Identities:
    """The email tracked per cartless visitor (keyed by the email itself)."""

    prefix = PREFIX  # of its changelog keys

    __slots__ = ("_gone", "_new", "legacy", "retention_ms", "tracked")

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self.tracked: dict[str, int] = {}  # cartless visitor's email -> when tracked
        self.legacy: dict[str, str] = {}  # cart id -> email, from an old `i<cart>` record
        self._new: list[str] = []
        self._gone: list[str] = []  # old `i<cart>` records moved into their cart

    def learn(self, email: str, ts: int) -> None:
        """Journey is told `email` for a cartless visitor now."""
        self.tracked[email] = ts
        self._new.append(email)

    def moved(self) -> dict[str, str]:
        """The legacy cart identities, handed over to their carts: tombstoned by the
        next `changes()`."""
        legacy, self.legacy = self.legacy, {}
        self._gone.extend(legacy)
        return legacy

    def changes(self) -> list[Record]:
        tracked = self.tracked
        records: list[Record] = [
            (key(PREFIX, name), orjson.dumps([name, tracked[name]]))
            for name in self._new
            if name in tracked
        ]
        records += [(key(PREFIX, name), None) for name in self._gone]
        self._new.clear()
        self._gone.clear()
        return records

    def load(self, name: str, value: bytes | None) -> int:
        if value is None:
            self.tracked.pop(name, None)
            self.legacy.pop(name, None)
            return 0
        email, ms = orjson.loads(value)
        if ms is None:  # a cart's, as written before carts carried their email
            self.legacy[name] = email
        else:
            self.tracked[name] = ms
        return 0

    def forget(self, name: str) -> list[Record]:
        """The identity of an erased visitor, with its tombstone."""
        if self.tracked.pop(name, None) is None:
            return []
        return [(key(PREFIX, name), None)]

    def named(self, email_sha256: str) -> set[str]:
        """The cartless visitors whose email has this hash (a forget request names an
        address by its hash only)."""
        return {name for name in self.tracked if email_hash(name) == email_sha256}

    def expire(self, now_ms: int) -> list[Record]:
        """Visitors tracked longer ago than the retention."""
        before = now_ms - self.retention_ms
        gone: list[Record] = []
        for name in [k for k, ms in self.tracked.items() if ms < before]:
            del self.tracked[name]
            gone.append((key(PREFIX, name), None))
        return gone

    def snapshot(self) -> dict[str, int]:
        return dict(self.tracked)
