"""Partition state: one input partition's stores, and the events folded into them.

One `PartitionState` per assigned input partition (a cart lives on one partition). It
holds the stream time (the newest event time: expiry runs on it, so retention means the
same under replay), the seal marks (key `w`) and the outbox; the data lives in the
stores (event_ids, orders, identities, carts, triggers), each with its changelog records
(records.py). This module keeps what spans them. Invariants: `apply()` dispatches each
event once; a cart's pending net change leaves before its next per-event command; a
cart's identity is part of the cart (carts.py), a cartless visitor's is in identities.
Ids are deterministic so a replay re-sends the same ids: `<event id>/<n>` for per-event
commands (Track, ProductView, transactions: they depend only on the state before the
event, which a restore reproduces), and for what depends on where a window closed, ids
with a digest of the content (carts.py, triggers.py), re-sent alike because the run
loop closes windows where they closed.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from ..errors import InvalidEventError
from ..journey.commands import Command
from ..source.changes import Change, LineChange, PageView, ProductView, Purchase
from .carts import MAX_CART_LINES, Cart, Carts, cart_email, net_change
from .compose import command
from .event_ids import EventIds, id_hash
from .identities import Identities
from .orders import Orders, transaction
from .records import MARKS_KEY, RECORD_BUDGET, Record, Store, split
from .triggers import Triggers, TriggerSettings

__all__ = [
    "DEFAULT_RETENTION",
    "MARKS_KEY",
    "MAX_CART_LINES",
    "RECORD_BUDGET",
    "Cart",
    "Command",
    "PartitionState",
    "Retention",
]

_DAY_MS = 86_400_000


class Retention(NamedTuple):
    """How long state is kept after its last use, in event-time milliseconds."""

    carts_ms: int = 30 * _DAY_MS
    event_ids_ms: int = _DAY_MS
    orders_ms: int = 90 * _DAY_MS


DEFAULT_RETENTION = Retention()


class PartitionState:
    """Everything one input partition needs to turn its events into exactly-right commands."""

    def __init__(
        self, retention: Retention = DEFAULT_RETENTION, triggers: TriggerSettings | None = None
    ) -> None:
        self.retention = retention
        self.triggers = triggers
        self._event_ids = EventIds(retention.event_ids_ms)
        self._orders = Orders(retention.orders_ms)
        self._identities = Identities(retention.carts_ms)
        self._carts = Carts(retention.carts_ms)
        self._triggers = Triggers(triggers, self._carts, self._identities.tracked)
        stores = (self._carts, self._event_ids, self._orders, self._identities, self._triggers)
        self._stores: dict[bytes, Store] = {store.prefix: store for store in stores}
        # the stores' containers, aliased: what the hot path and the runtime read
        self.event_ids = self._event_ids  # `"<id>" in state.event_ids`: processed?
        self.seen = self._event_ids.seen  # their recent hashes (event_ids.py), for replays
        self._new_ids = self._event_ids.new
        self.orders = self._orders.orders  # order id -> event time
        self.visitors = self._identities.tracked  # cartless visitor's email -> when tracked
        self.carts = self._carts.carts  # cart id -> Cart, or bytes while idle
        self.page_of = self._carts.page  # normalise.Pages: the page a cart shows
        self.dirty = self._carts.dirty
        self.timers = self._triggers.timers
        self.browsing = self._triggers.browsing
        # which triggers watch the events (flags, not bound methods: compiled, a call of
        # a store's method is a native call, a call of a bound method a generic one)
        self._cart_timers = triggers is not None
        self._browse = triggers is not None and bool(triggers.browse_after_ms)
        self.outbox: list[Command] = []
        self.stream_ms = 0  # the newest event time seen
        # where windows not yet committed closed, [input offset, repartition offset]
        # each: restored from the changelog so a replay closes them in the same places
        self.marks: list[list[int]] = []
        self._expired_at = 0

    def apply(self, change: Change) -> bool:
        """Fold one event in; False when it was a replay (or a repeated transaction)."""
        event_id = change.event_id
        id_key = id_hash(event_id)
        if id_key in self.seen or self._event_ids.archived(id_key):
            return False
        if type(change) is LineChange:
            if change.added:
                self._carts.check_room(change.cart_id, change.product_id)
        elif (
            type(change) is PageView
            and change.snapshot is not None
            and change.snapshot.lines is not None
            and len(change.snapshot.lines) > MAX_CART_LINES
        ):
            raise InvalidEventError(
                "cart.lineItems",
                reason="invalid-value",
                detail=f"cart.lineItems has more than {MAX_CART_LINES} lines",
            )
        self.seen.add(id_key)
        self._new_ids.append(id_key)
        ts = change.ts
        if ts > self.stream_ms:  # noqa: PLR1730  (hot path: cheaper than max())
            self.stream_ms = ts
        email = change.email
        cart_id = change.cart_id
        n = 0
        if email is not None:
            if cart_id is None:
                if email not in self.visitors:
                    n = self._track(change, email)
            elif (cart := self.carts.get(cart_id)) is None or cart_email(cart) != email:
                n = self._track(change, email)
        if type(change) is LineChange:
            cart_id = change.cart_id
            cart = self._carts.open(cart_id, ts)
            if self._cart_timers:
                self._triggers.cart_active(cart_id, ts)
            if change.added:
                if cart_id in self.browsing:
                    self._triggers.added_to_cart(cart_id)
                quantity = change.quantity
                cart.add(
                    change.product_id,
                    1 if quantity is None else quantity,
                    change.name,
                    change.price,
                )
            else:
                cart.remove(change.product_id, change.quantity)
        elif type(change) is PageView:
            snap = change.snapshot
            if snap is not None and cart_id is not None:
                self._carts.open(cart_id, ts).replace(snap.total, snap.step, snap.lines, snap.page)
                if self._cart_timers:
                    self._triggers.cart_active(cart_id, ts)
        elif type(change) is ProductView:
            if self._browse:
                self._triggers.viewed(cart_id or email, change.product_id, ts)
            if cart_id is not None and cart_id in self.dirty:
                self._settle(cart_id)
            self.outbox.append(
                command(
                    f"{event_id}/{n}",
                    ts,
                    cart_id,
                    self._carts.email(cart_id) if cart_id else email,
                    "ECommerce.ProductView",
                    {"idProduct": change.product_id},
                )
            )
        elif type(change) is Purchase:
            return self._purchase(change, n)
        return True

    def _track(self, change: Change, email: str) -> int:
        """The cart's (or cartless visitor's) email is first known or changed: Track."""
        cart_id = change.cart_id
        if cart_id is None:
            self._identities.learn(email, change.ts)
        else:
            self._carts.identify(cart_id, email, change.ts)
            self._triggers.email_known(cart_id)
            self._settle(cart_id)
        cid = f"{change.event_id}/0"
        self.outbox.append(command(cid, change.ts, cart_id, email, "Track", {"f_EMail": email}))
        return 1

    def _settle(self, cart_id: str) -> None:
        """Before a per-event command of a cart leaves, its pending cart change leaves
        first, so Journey sees one cart's commands in the order of its events."""
        cart = self.dirty.pop(cart_id, None)
        if cart is not None:
            net_change(cart_id, cart, self.outbox)

    def _purchase(self, p: Purchase, n: int) -> bool:
        if not self._orders.first(p.order_id, p.ts):
            return False
        cart_id = p.cart_id
        email = (self._carts.email(cart_id) if cart_id else p.email) or p.email
        if cart_id is not None:
            self._settle(cart_id)  # Journey learns the cart's last state before it closes
            self._triggers.cart_closed(cart_id)
            self._carts.close(cart_id)
        transaction(p, n, email, self.outbox)
        return True

    def flush(self) -> list[Command]:
        """The window's commands in order: per-event ones first, then each cart's net change."""
        out = self.outbox
        self.outbox = []
        for cart_id, cart in self.dirty.items():
            net_change(cart_id, cart, out)
        self.dirty.clear()
        return out

    def fire_due(self, now_ms: int) -> list[Command]:
        """Trigger commands for the carts and visitors quiet long enough by `now_ms` (the
        partition's clock, see triggers.py); appended to the outbox and returned."""
        fired = self._triggers.fire_due(now_ms)
        self.outbox.extend(fired)
        return fired

    def restored(self) -> None:
        """After a restore: cart identities read from old `i<cart>` records moved into
        their carts (an identity without its cart gets an empty cart, which expires with
        the retention), then the timers (see `Triggers.rearm`)."""
        for cart_id, email in self._identities.moved().items():
            self._carts.identify(cart_id, email, self.stream_ms)
        self._triggers.rearm(self.stream_ms)

    def forget(self, cart_id: str | None = None, email_sha256: str | None = None) -> list[Record]:
        """Erase a shopper (GDPR): the cart named, or every cart and cartless visitor
        the email (named by its hash) was tracked for, with their identities, browsing,
        timers and commands not yet sent. Event and order ids stay: they hold nothing of
        the shopper and keep replayed records out. Returns the changelog tombstones."""
        names = set()
        if email_sha256:
            names = self._carts.named(email_sha256) | self._identities.named(email_sha256)
        if cart_id is not None:
            names.add(cart_id)
        emails = {name for name in names if name in self.visitors}
        emails |= {email for name in names if (email := self._carts.email(name)) is not None}
        gone: list[Record] = []
        for name in names:
            gone += self._carts.drop(name) + self._identities.forget(name)
            gone += self._triggers.drop(name)
        self.outbox = [
            c for c in self.outbox if c["cartId"] not in names and c["email"] not in emails
        ]
        return gone

    # -- durability ------------------------------------------------------------------

    def changes(self) -> list[Record]:
        """Changelog records for all that changed since the last call, with tombstones
        for what expired. Call after `flush()`, so carts carry what Journey was sent."""
        records = self._expire()
        records += self._carts.changes()
        records += self._event_ids.changes(self.stream_ms)
        records += self._orders.changes()
        records += self._triggers.changes()
        records += self._identities.changes()
        return records

    def compact(self) -> None:
        """Idle carts to their compact form (see `Carts.compact`)."""
        self._carts.compact()

    def _expire(self) -> list[Record]:
        """Forget what retention let go, at most every 1/48 of the shortest retention."""
        now = self.stream_ms
        if now - self._expired_at < min(self.retention) // 48:
            return []
        self._expired_at = now
        gone = self._carts.expire(now)
        gone += self._identities.expire(now)
        gone += self._orders.expire(now)
        gone += self._event_ids.expire(now)
        return gone

    def load(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (restore); the last record of a key wins."""
        prefix, name = split(key)
        store = self._stores.get(prefix)
        if store is not None:
            ms = store.load(name, value)
            if ms > self.stream_ms:  # noqa: PLR1730  (per record of a restore: no max())
                self.stream_ms = ms
        elif key == MARKS_KEY:
            self.marks = orjson.loads(value) if value is not None else []

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain data, to compare a restored state with the original."""
        return {
            "carts": self._carts.snapshot(),
            "seen": self._event_ids.snapshot(),
            "orders": self._orders.snapshot(),
            "browsing": self._triggers.snapshot(),
            "identities": self._identities.snapshot(),
        }
