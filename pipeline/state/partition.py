"""Partition-local state: carts, replays, transactions, identities -> net Journey commands.

One `PartitionState` per assigned input partition (carts are keyed by cart id, so a
cart lives on one partition). `apply()` folds a Change into the state; commands that
stand for a single event (Track, ProductView, transactions) go to the outbox at once,
while cart changes only mark the cart dirty. `flush()` then emits, per dirty cart, one
net change against what Journey already has: AddCart or UpdateCart, AddCartItem per
line that is new or changed (absolute quantity), RemoveCartItem per line that left,
SubmitCart. A cart that ends the window as it began sends nothing.

Command ids are deterministic so a replay after a crash re-sends the same ids:
`<event id>/<n>` for per-event commands, `<cart id>@<version>.<digest>/<n>` for a
cart's net change (the version counts the net changes sent for that cart, the digest
is of what the change says) and `<cart id>@abandoned@<activity ms>.<digest>` for
triggers. A command whose content depends on where a window closed carries a digest
of that content, so one id never stands for two contents; the run loop makes windows
close where they closed before a crash (seal marks), so a replay re-sends the same
ids rather than new ones. Per-event commands depend only on the state before the
event, which a restore reproduces.

Durability: `changes()` returns, as changelog records, everything that changed since
it was last called (plus tombstones for what expired); `load()` applies one such
record when the partition's state is restored. Keys: `c<cart id>` (a cart),
`s<n>` (a chunk of the event ids of one window, for replays, each under
`RECORD_BUDGET` bytes), `o<order id>`, `i<identity key>`, `b<visitor>` (browsing),
and `w` (the seal marks of windows not yet committed, written by the run loop).
Expiry runs on stream time (the newest event time seen), so retention means the same
under replay and in a time-compressed benchmark.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import orjson

from ..errors import InvalidEventError
from ..journey.commands import Command
from ..source.normalise import Change, Line, LineChange, PageView, ProductView, Purchase
from .triggers import BROWSE, CART, MAX_VIEWED, Timers, TriggerSettings


def _command(  # noqa: PLR0917  (called on the hot path: positional is cheaper)
    cid: str, ts: int, cart_id: str | None, email: str | None, call: str, args: dict[str, Any]
) -> Command:
    return {"id": cid, "ts": ts, "cartId": cart_id, "email": email, "call": call, "args": args}


def _put(args: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Optional arguments without a value are left out, never sent as null."""
    if value is not None:
        args[key] = value
    return args


def _money(value: float) -> float:
    return round(value, 2)


def _digest(payload: Any) -> str:
    """Eight hex digits of what a command says: part of the ids of commands whose
    content depends on where windows closed."""
    return hashlib.blake2b(orjson.dumps(payload), digest_size=4).hexdigest()


_DAY_MS = 86_400_000
RECORD_BUDGET = 256_000  # bytes: no changelog record the state writes is larger
MAX_CART_LINES = 500  # a cart's record stays far below RECORD_BUDGET
MARKS_KEY = b"w"


class Retention(NamedTuple):
    """How long state is kept after its last use, in event-time milliseconds."""

    carts_ms: int = 30 * _DAY_MS
    event_ids_ms: int = _DAY_MS
    orders_ms: int = 90 * _DAY_MS


DEFAULT_RETENTION = Retention()
COMPACT_EVERY = 30  # windows between compaction passes (about 30 s at the default window)
COMPACT_RECENT_MAX = 50_000  # or sooner, when this many carts were used since the last pass


Sent = tuple[int, float | None, str | None]  # a line as Journey holds it: quantity, price, name


def _sent(line: Line) -> Sent:
    return (line.quantity, line.price, line.name)


class Cart:
    """A cart's true state (`lines`, `total`, `step`) and what Journey last received."""

    __slots__ = (
        "abandoned_at",
        "created",
        "lines",
        "sent_lines",
        "sent_step",
        "sent_total",
        "step",
        "total",
        "ts",
        "version",
    )

    def __init__(self) -> None:
        self.lines: dict[str, Line] = {}
        self.total = 0.0
        self.step: int | None = None
        self.ts = 0
        self.version = 0
        self.created = False
        self.sent_lines: dict[str, Sent] = {}  # what Journey holds of each line
        self.sent_total: float | None = None
        self.sent_step: int | None = None
        self.abandoned_at = 0  # the activity time an AbandonedCart trigger fired for

    def dump(self) -> bytes:
        """The cart as 8 bytes of big-endian event time, then JSON: the changelog value,
        and the form an idle cart is kept in (a third of the memory of the objects)."""
        lines = [[pid, line.name, line.price, line.quantity] for pid, line in self.lines.items()]
        sent: Any = 0  # Journey holds the cart as it is: the usual case, said in a byte
        if not self._in_sync():
            sent = [self.sent_total, self.sent_step, list(self.sent_lines.items())]
        return self.ts.to_bytes(8, "big") + orjson.dumps(
            [self.version, self.created, self.total, self.step, lines, sent, self.abandoned_at]
        )

    def _in_sync(self) -> bool:
        sent = self.sent_lines
        return (
            self.sent_total == _money(self.total)
            and self.sent_step == self.step
            and len(sent) == len(self.lines)
            and all(sent.get(pid) == _sent(line) for pid, line in self.lines.items())
        )

    @classmethod
    def load(cls, data: bytes) -> Cart:
        version, created, total, step, lines, sent, abandoned_at = orjson.loads(data[8:])
        cart = cls()
        cart.abandoned_at = abandoned_at
        cart.ts = int.from_bytes(data[:8], "big")
        cart.version, cart.created, cart.total, cart.step = version, created, total, step
        cart.lines = {pid: Line(name, price, quantity) for pid, name, price, quantity in lines}
        if sent == 0:
            cart.sent_total, cart.sent_step = _money(total), step
            cart.sent_lines = {pid: _sent(line) for pid, line in cart.lines.items()}
        else:
            cart.sent_total, cart.sent_step = sent[0], sent[1]
            # records from before prices were tracked hold a bare quantity: unknown
            # price and name, so the line is sent again on its next change
            cart.sent_lines = {
                pid: (held, None, None) if type(held) is int else tuple(held)
                for pid, held in sent[2]
            }
        return cart

    def close(self) -> None:
        """A transaction closed the cart: forget its content, keep its version so the
        next cart under the same id gets new command ids."""
        self.lines = {}
        self.total = 0.0
        self.step = None
        self.created = False
        self.sent_lines = {}
        self.sent_total = None
        self.sent_step = None

    def replace(self, total: float | None, step: int | None, lines: dict[str, Line]) -> None:
        self.lines = {pid: line for pid, line in lines.items() if line.quantity > 0}
        self.total = (
            total
            if total is not None
            else sum((line.price or 0.0) * line.quantity for line in self.lines.values())
        )
        self.step = step

    def add(self, product_id: str, quantity: int, name: str | None, price: float | None) -> None:
        if quantity <= 0:
            return
        line = self.lines.get(product_id)
        if line is None:
            line = self.lines[product_id] = Line(name, price, 0)
        else:
            line.name = name if name is not None else line.name
            line.price = price if price is not None else line.price
        line.quantity += quantity
        if line.price is not None:
            self.total += line.price * quantity

    def remove(self, product_id: str, quantity: int | None) -> None:
        line = self.lines.get(product_id)
        if line is None:
            return
        taken = line.quantity if quantity is None else min(max(quantity, 0), line.quantity)
        line.quantity -= taken
        if line.quantity == 0:
            del self.lines[product_id]
        if line.price is not None:
            self.total -= line.price * taken


def _cart_ms(cart: Cart | bytes) -> int:
    return int.from_bytes(cart[:8], "big") if type(cart) is bytes else cart.ts  # type: ignore[union-attr]


class PartitionState:
    """Everything one input partition needs to turn its events into exactly-right commands."""

    def __init__(
        self, retention: Retention = DEFAULT_RETENTION, triggers: TriggerSettings | None = None
    ) -> None:
        self.retention = retention
        self.triggers = triggers
        self.timers = Timers()
        self.browsing: dict[str, list[Any]] = {}  # visitor key -> [last view ms, product ids]
        self._browse_changed: set[str] = set()
        self._awaiting_email: dict[str, int] = {}  # quiet cart id -> its activity time
        self.carts: dict[str, Cart | bytes] = {}  # bytes: idle since the last changes()
        self.seen: set[str] = set()  # event ids processed, for replays
        self.orders: dict[str, int] = {}  # order id -> event time, transactions sent once
        self.identities: dict[str, str] = {}  # cart id (else the email) -> email sent by Track
        self.identity_ms: dict[str, int] = {}  # cartless visitor's email -> when tracked
        self.dirty: dict[str, Cart] = {}
        self.outbox: list[Command] = []
        self.stream_ms = 0  # the newest event time seen
        # where windows not yet committed closed, [input offset, repartition offset]
        # each: restored from the changelog so a replay closes them in the same places
        self.marks: list[list[int]] = []
        # what changed since the last `changes()`, and the event-id windows kept
        self._touched: set[str] = set()
        self._new_ids: list[str] = []
        self._new_orders: list[str] = []
        self._new_identities: list[str] = []
        self._id_windows: dict[int, tuple[int, list[str]]] = {}  # n -> (newest ms, ids)
        self._next_window = 0
        self._expired_at = 0
        self._recent: set[str] = set()  # carts touched since the last compaction
        self._changes_calls = 0

    def apply(self, change: Change) -> bool:
        """Fold one event in; False when it was a replay (or a repeated transaction)."""
        event_id = change.event_id
        if event_id in self.seen:
            return False
        if type(change) is LineChange:
            if change.added:
                self._check_room(change.cart_id, change.product_id)
        elif (
            type(change) is PageView
            and change.snapshot is not None
            and len(change.snapshot.lines) > MAX_CART_LINES
        ):
            raise InvalidEventError(
                "cart.lineItems",
                reason="invalid-value",
                detail=f"cart.lineItems has more than {MAX_CART_LINES} lines",
            )
        self.seen.add(event_id)
        self._new_ids.append(event_id)
        if change.ts > self.stream_ms:  # noqa: PLR1730  (hot path: cheaper than max())
            self.stream_ms = change.ts
        n = self._identify(change)
        if type(change) is LineChange:
            cart = self._cart(change.cart_id, change.ts)
            if change.added:
                if change.cart_id in self.browsing:  # added to cart: not a browse abandonment
                    del self.browsing[change.cart_id]
                    self._browse_changed.add(change.cart_id)
                cart.add(
                    change.product_id,
                    1 if change.quantity is None else change.quantity,
                    change.name,
                    change.price,
                )
            else:
                cart.remove(change.product_id, change.quantity)
        elif type(change) is PageView:
            if change.snapshot is not None and change.cart_id is not None:
                snap = change.snapshot
                self._cart(change.cart_id, change.ts).replace(snap.total, snap.step, snap.lines)
        elif type(change) is ProductView:
            if self.triggers is not None and self.triggers.browse_after_ms:
                self._browsed(change.cart_id or change.email, change.product_id, change.ts)
            self._settle(change.cart_id)
            self.outbox.append(
                _command(
                    f"{event_id}/{n}",
                    change.ts,
                    change.cart_id,
                    self._email(change),
                    "ECommerce.ProductView",
                    {"idProduct": change.product_id},
                )
            )
        elif type(change) is Purchase:
            return self._purchase(change, n)
        return True

    def _check_room(self, cart_id: str, product_id: str) -> None:
        """A cart holds at most MAX_CART_LINES lines (give or take one added to an idle
        cart), so its changelog record fits; past that, an added line is dead-lettered
        before it changes anything."""
        cart = self.carts.get(cart_id)
        if (
            isinstance(cart, Cart)
            and len(cart.lines) >= MAX_CART_LINES
            and product_id not in cart.lines
        ):
            raise InvalidEventError(
                "product.id",
                reason="invalid-value",
                detail=f"the cart already has {MAX_CART_LINES} lines",
            )

    def _identify(self, change: Change) -> int:
        """Track when a cart's (or a cartless visitor's) email is first known or changes."""
        email = change.email
        if email is None:
            return 0
        key = change.cart_id or email
        if self.identities.get(key) == email:
            return 0
        self.identities[key] = email
        if change.cart_id is None:  # a cart's identity lives and expires with the cart
            self.identity_ms[key] = change.ts
        elif change.cart_id in self._awaiting_email and self.triggers is not None:
            self.timers.arm(CART, change.cart_id, 0)  # quiet, email now known: due at once
        self._new_identities.append(key)
        self._settle(change.cart_id)
        self.outbox.append(
            _command(
                f"{change.event_id}/0",
                change.ts,
                change.cart_id,
                email,
                "Track",
                {"f_EMail": email},
            )
        )
        return 1

    def _settle(self, cart_id: str | None) -> None:
        """Before a per-event command of a cart leaves, its pending cart change leaves
        first, so Journey sees one cart's commands in the order of its events."""
        if cart_id is not None and cart_id in self.dirty:
            self._net_change(cart_id, self.dirty.pop(cart_id), self.outbox)

    def _email(self, change: Change) -> str | None:
        return self.identities.get(change.cart_id) if change.cart_id else change.email

    def _held(self, cart_id: str) -> Cart | None:
        cart = self.carts.get(cart_id)
        if type(cart) is bytes:
            cart = self.carts[cart_id] = Cart.load(cart)
        return cart  # type: ignore[return-value]

    def _cart(self, cart_id: str, ts: int) -> Cart:
        cart = self._held(cart_id)
        if cart is None:
            cart = self.carts[cart_id] = Cart()
        cart.ts = ts
        self.dirty[cart_id] = cart
        self._touched.add(cart_id)
        if self.triggers is not None:
            self.timers.arm(CART, cart_id, ts + self.triggers.cart_after_ms)
        return cart

    def _purchase(self, p: Purchase, n: int) -> bool:
        if p.order_id in self.orders:
            return False
        self.orders[p.order_id] = p.ts
        self._new_orders.append(p.order_id)
        email = self._email(p) or p.email
        cart_id = p.cart_id
        if cart_id is not None:
            self._settle(cart_id)  # Journey learns the cart's last state before it closes
            self._awaiting_email.pop(cart_id, None)
            if self.browsing.pop(cart_id, None) is not None:
                self._browse_changed.add(cart_id)
            cart = self._held(cart_id)
            if cart is not None:
                cart.close()
                self._touched.add(cart_id)
        order = p.order_id
        out = self.outbox
        out.append(
            _command(
                f"{p.event_id}/{n}",
                p.ts,
                cart_id,
                email,
                "ECommerce.AddTransaction",
                _put(
                    _put(
                        _put(
                            _put(
                                _put({"idTransaction": order}, "idCart", cart_id),
                                "affiliation",
                                p.affiliation,
                            ),
                            "revenue",
                            p.revenue,
                        ),
                        "tax",
                        p.tax,
                    ),
                    "shipping",
                    p.shipping,
                ),
            )
        )
        for product_id, line in p.lines:
            n += 1
            args = _put(
                {"idTransaction": order, "idProduct": product_id, "quantity": line.quantity},
                "idCart",
                cart_id,
            )
            _put(args, "productName", line.name)
            _put(args, "Price_unit", line.price)
            total = line.subtotal
            if total is None and line.price is not None:
                total = _money(line.price * line.quantity)
            _put(args, "Price_total", total)
            out.append(
                _command(f"{p.event_id}/{n}", p.ts, cart_id, email, "ECommerce.AddItem", args)
            )
        out.append(
            _command(
                f"{p.event_id}/{n + 1}",
                p.ts,
                cart_id,
                email,
                "ECommerce.SubmitTransaction",
                {"idTransaction": order},
            )
        )
        return True

    def _net_change(self, cart_id: str, cart: Cart, out: list[Command]) -> None:
        total = _money(cart.total)
        sent = cart.sent_lines
        changed = [(pid, line) for pid, line in cart.lines.items() if sent.get(pid) != _sent(line)]
        removed = [pid for pid in sent if pid not in cart.lines]
        if not cart.created and not cart.lines:
            return  # an empty cart Journey does not know is no news
        if (
            cart.created
            and not changed
            and not removed
            and total == cart.sent_total
            and cart.step == cart.sent_step
        ):
            return
        calls: list[tuple[str, dict[str, Any]]] = [
            (
                "ECommerce.UpdateCart" if cart.created else "ECommerce.AddCart",
                _put({"idCart": cart_id, "TotalPrice": total}, "status", cart.step),
            )
        ]
        for pid, line in changed:
            args = {"idCart": cart_id, "idProduct": pid, "quantity": line.quantity}
            _put(args, "productName", line.name)
            _put(args, "priceunit", line.price)
            calls.append(("ECommerce.AddCartItem", args))
        for pid in removed:
            calls.append(("ECommerce.RemoveCartItem", {"idCart": cart_id, "idProduct": pid}))
        calls.append(("ECommerce.SubmitCart", {"idCart": cart_id}))
        ts = cart.ts
        email = self.identities.get(cart_id)
        cart.version += 1
        prefix = f"{cart_id}@{cart.version}.{_digest((ts, email, calls))}/"
        for n, (call, args) in enumerate(calls):
            out.append(_command(prefix + str(n), ts, cart_id, email, call, args))
        cart.created = True
        cart.sent_lines = {pid: _sent(line) for pid, line in cart.lines.items()}
        cart.sent_total = total
        cart.sent_step = cart.step

    def _browsed(self, key: str | None, product_id: str, ts: int) -> None:
        if key is None or self.triggers is None:
            return
        entry = self.browsing.get(key)
        if entry is None:
            entry = self.browsing[key] = [ts, []]
        views: list[str] = entry[1]
        if product_id in views:
            views.remove(product_id)
        views.insert(0, product_id)
        del views[MAX_VIEWED:]
        entry[0] = max(entry[0], ts)
        self._browse_changed.add(key)
        self.timers.arm(BROWSE, key, entry[0] + self.triggers.browse_after_ms)

    def fire_due(self, now_ms: int) -> list[Command]:
        """Trigger commands for the carts and visitors quiet long enough by `now_ms` (the
        partition's clock, see triggers.py); appended to the outbox and returned."""
        if self.triggers is None:
            return []
        fired: list[Command] = []
        while (entry := self.timers.pop_due(now_ms)) is not None:
            _, kind, key = entry
            command = (
                self._abandoned_cart(key, now_ms)
                if kind == CART
                else self._browse_abandoned(key, now_ms)
            )
            if command is not None:
                fired.append(command)
        self.outbox.extend(fired)
        return fired

    def _abandoned_cart(self, cart_id: str, now_ms: int) -> Command | None:
        settings = self.triggers
        assert settings is not None
        cart = self._held(cart_id)
        if cart is None or not cart.lines or cart.abandoned_at == cart.ts:
            self._awaiting_email.pop(cart_id, None)
            return None
        due = cart.ts + settings.cart_after_ms
        if due > now_ms:  # active since it was armed: wait for the new due time
            self.timers.arm(CART, cart_id, due)
            return None
        email = self.identities.get(cart_id)
        awaited = self._awaiting_email.pop(cart_id, None)
        if email is None:
            if now_ms <= due + settings.grace_ms:
                self._awaiting_email[cart_id] = cart.ts
            return None
        if awaited is not None and now_ms > due + settings.grace_ms:
            return None  # the email came after the grace period
        cart.abandoned_at = cart.ts
        self._touched.add(cart_id)
        items = []
        for pid, line in cart.lines.items():
            item = _put(
                _put({"idProduct": pid, "quantity": line.quantity}, "productName", line.name),
                "priceunit",
                line.price,
            )
            items.append(item)
        args = {
            "name": "AbandonedCart",
            "idCart": cart_id,
            "TotalPrice": _money(cart.total),
            "email": email,
            "items": items,
            "lastActivity": cart.ts,
        }
        return _command(
            f"{cart_id}@abandoned@{cart.ts}.{_digest(args)}", due, cart_id, email, "Trigger", args
        )

    def _browse_abandoned(self, key: str, now_ms: int) -> Command | None:
        settings = self.triggers
        assert settings is not None
        entry = self.browsing.get(key)
        if entry is None:
            return None
        due = entry[0] + settings.browse_after_ms
        if due > now_ms:
            self.timers.arm(BROWSE, key, due)
            return None
        del self.browsing[key]
        self._browse_changed.add(key)
        email = self.identities.get(key)
        if email is None:
            return None
        cart_id = key if key != email else None
        args = {
            "name": "BrowseAbandonment",
            "email": email,
            "viewedProducts": list(entry[1]),
            "lastActivity": entry[0],
        }
        return _command(
            f"{key}@browse@{entry[0]}.{_digest(args)}", due, cart_id, email, "Trigger", args
        )

    def rearm(self) -> None:
        """Timers after a restore: carts active recently enough to fall due or still be
        in their grace period, and every browsing visitor."""
        if self.triggers is None:
            return
        settings = self.triggers
        horizon = self.stream_ms - settings.cart_after_ms - settings.grace_ms
        for cart_id, cart in self.carts.items():
            ts = _cart_ms(cart)
            if ts >= horizon:
                self.timers.arm(CART, cart_id, ts + settings.cart_after_ms)
        for key, entry in self.browsing.items():
            self.timers.arm(BROWSE, key, entry[0] + settings.browse_after_ms)

    def flush(self) -> list[Command]:
        """The window's commands in order: per-event ones first, then each cart's net change."""
        out = self.outbox
        self.outbox = []
        for cart_id, cart in self.dirty.items():
            self._net_change(cart_id, cart, out)
        self.dirty.clear()
        return out

    # -- durability ------------------------------------------------------------------

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """Changelog records for all that changed since the last call, with tombstones
        for what expired. Call after `flush()`, so carts carry what Journey was sent."""
        records: list[tuple[bytes, bytes | None]] = self._expire()
        carts = self.carts
        for cart_id in self._touched:
            cart = carts.get(cart_id)
            records.append(
                (b"c" + cart_id.encode(), cart.dump() if isinstance(cart, Cart) else cart)
            )
        self._recent |= self._touched
        self._touched.clear()
        self._changes_calls += 1
        if self._changes_calls % COMPACT_EVERY == 0 or len(self._recent) > COMPACT_RECENT_MAX:
            self.compact()
        if self._new_ids:
            records.extend(self._id_chunks(self._new_ids))
            self._new_ids = []
        for order_id in self._new_orders:
            if order_id in self.orders:  # else it expired already: its tombstone is written
                records.append((b"o" + order_id.encode(), orjson.dumps(self.orders[order_id])))
        self._new_orders.clear()
        for key in self._browse_changed:
            entry = self.browsing.get(key)
            records.append((b"b" + key.encode(), orjson.dumps(entry) if entry else None))
        self._browse_changed.clear()
        for key in self._new_identities:
            if key not in self.identities:
                continue
            records.append(
                (
                    b"i" + key.encode(),
                    orjson.dumps([self.identities[key], self.identity_ms.get(key)]),
                )
            )
        self._new_identities.clear()
        return records

    def _id_chunks(self, ids: list[str]) -> list[tuple[bytes, bytes | None]]:
        """The window's event ids as `s<n>` records, each under RECORD_BUDGET bytes (a
        window of 100,000 UUIDs is 4 MB in one piece: more than a topic takes)."""
        records: list[tuple[bytes, bytes | None]] = []
        start, size = 0, 0
        for i, event_id in enumerate(ids):
            size += len(event_id) + 3  # quotes and comma; measured exactly below
            if size > RECORD_BUDGET // 2 and i > start:
                self._id_window(ids[start:i], records)
                start, size = i, len(event_id) + 3
        self._id_window(ids[start:] if start else ids, records)
        return records

    def _id_window(self, ids: list[str], records: list[tuple[bytes, bytes | None]]) -> None:
        value = orjson.dumps([self.stream_ms, ids])
        if len(value) > RECORD_BUDGET and len(ids) > 1:  # escapes, non-ASCII: halve it
            half = len(ids) // 2
            self._id_window(ids[:half], records)
            self._id_window(ids[half:], records)
            return
        n = self._next_window
        self._next_window += 1
        self._id_windows[n] = (self.stream_ms, ids)
        records.append((b"s%d" % n, value))

    def compact(self) -> None:
        """Keep carts idle since the last pass in their compact form (a third of the
        memory); carts in use stay objects, so a busy cart is not re-parsed per window."""
        recent = self._recent
        carts = self.carts
        for cart_id, cart in carts.items():
            if isinstance(cart, Cart) and cart_id not in recent and cart_id not in self.dirty:
                carts[cart_id] = cart.dump()
        recent.clear()

    def _expire(self) -> list[tuple[bytes, bytes | None]]:
        """Forget what retention let go, at most every 1/48 of the shortest retention."""
        now, keep = self.stream_ms, self.retention
        if now - self._expired_at < min(keep) // 48:
            return []
        self._expired_at = now
        gone: list[tuple[bytes, bytes | None]] = []
        idle_since = now - keep.carts_ms
        for cart_id in [c for c, cart in self.carts.items() if _cart_ms(cart) < idle_since]:
            del self.carts[cart_id]
            self._touched.discard(cart_id)
            gone.append((b"c" + cart_id.encode(), None))
            if self.identities.pop(cart_id, None) is not None:
                gone.append((b"i" + cart_id.encode(), None))
        for key in [k for k, ms in self.identity_ms.items() if ms < now - keep.carts_ms]:
            del self.identities[key], self.identity_ms[key]
            gone.append((b"i" + key.encode(), None))
        for order_id in [o for o, ms in self.orders.items() if ms < now - keep.orders_ms]:
            del self.orders[order_id]
            gone.append((b"o" + order_id.encode(), None))
        for n in [n for n, (ms, _) in self._id_windows.items() if ms < now - keep.event_ids_ms]:
            self.seen.difference_update(self._id_windows.pop(n)[1])
            gone.append((b"s%d" % n, None))
        return gone

    def load(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (restore); the last record of a key wins."""
        if key == MARKS_KEY:
            self.marks = orjson.loads(value) if value is not None else []
            return
        kind, name = key[:1], key[1:].decode()
        if kind == b"c":
            if value is None:
                self.carts.pop(name, None)
            else:
                self.carts[name] = value
                self.stream_ms = max(self.stream_ms, _cart_ms(value))
        elif kind == b"s":
            n = int(name)
            old = self._id_windows.pop(n, None)
            if old is not None:
                self.seen.difference_update(old[1])
            if value is not None:
                ms, ids = orjson.loads(value)
                self._id_windows[n] = (ms, ids)
                self.seen.update(ids)
                self.stream_ms = max(self.stream_ms, ms)
            self._next_window = max(self._next_window, n + 1)
        elif kind == b"o":
            if value is None:
                self.orders.pop(name, None)
            else:
                self.orders[name] = orjson.loads(value)
        elif kind == b"b":
            if value is None:
                self.browsing.pop(name, None)
            else:
                self.browsing[name] = orjson.loads(value)
        elif kind == b"i":
            if value is None:
                self.identities.pop(name, None)
                self.identity_ms.pop(name, None)
            else:
                email, ms = orjson.loads(value)
                self.identities[name] = email
                if ms is not None:
                    self.identity_ms[name] = ms

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain data, to compare a restored state with the original."""
        return {
            "carts": {
                cid: (cart if isinstance(cart, bytes) else cart.dump()).hex()
                for cid, cart in self.carts.items()
            },
            "seen": sorted(self.seen),
            "orders": dict(self.orders),
            "browsing": dict(self.browsing),
            "identities": {k: [e, self.identity_ms.get(k)] for k, e in self.identities.items()},
        }
