"""Identities: the email Journey was last told (by a Track) for each cart or visitor.

Owns the `i<identity key>` records (value: `[email, tracked ms or null]`). The key is
the cart id, or the email itself for a visitor without a cart. Invariant: a cart's
identity lives and expires with its cart (the partition state forgets it when the
cart expires); a cartless visitor's expires `retention_ms` after it was tracked.
"""

from __future__ import annotations

import orjson

from ..source.identity import email_hash
from .records import Record, key

PREFIX = b"i"


class Identities:
    """The email tracked per cart or cartless visitor."""

    prefix = PREFIX  # of its changelog keys

    __slots__ = ("_new", "emails", "retention_ms", "since")

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self.emails: dict[str, str] = {}  # cart id (else the email) -> email sent by Track
        self.since: dict[str, int] = {}  # cartless visitor's email -> when tracked
        self._new: list[str] = []

    def learn(self, name: str, email: str, cart_id: str | None, ts: int) -> None:
        """Journey is told `email` for `name` (a cart id, else the email) now."""
        self.emails[name] = email
        if cart_id is None:  # a cart's identity lives and expires with the cart
            self.since[name] = ts
        self._new.append(name)

    def changes(self) -> list[Record]:
        emails, since = self.emails, self.since
        records: list[Record] = [
            (key(PREFIX, name), orjson.dumps([emails[name], since.get(name)]))
            for name in self._new
            if name in emails
        ]
        self._new.clear()
        return records

    def load(self, name: str, value: bytes | None) -> int:
        if value is None:
            self.emails.pop(name, None)
            self.since.pop(name, None)
        else:
            email, ms = orjson.loads(value)
            self.emails[name] = email
            if ms is not None:
                self.since[name] = ms
        return 0

    def forget(self, name: str) -> list[Record]:
        """The identity of an expired (or erased) cart or visitor, with its tombstone."""
        self.since.pop(name, None)
        if self.emails.pop(name, None) is None:
            return []
        return [(key(PREFIX, name), None)]

    def named(self, email_sha256: str) -> set[str]:
        """The carts and cartless visitors whose tracked email has this hash (a forget
        request names an address by its hash only)."""
        return {name for name, email in self.emails.items() if email_hash(email) == email_sha256}

    def expire(self, now_ms: int) -> list[Record]:
        """Cartless visitors tracked longer ago than the retention."""
        before = now_ms - self.retention_ms
        gone: list[Record] = []
        for name in [k for k, ms in self.since.items() if ms < before]:
            del self.emails[name], self.since[name]
            gone.append((key(PREFIX, name), None))
        return gone

    def snapshot(self) -> dict[str, list[str | int | None]]:
        return {k: [e, self.since.get(k)] for k, e in self.emails.items()}
