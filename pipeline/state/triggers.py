"""Triggers the pipeline detects itself: abandoned carts and browse abandonment.

All trigger logic lives here: the timers, the browsing store (`b<visitor>` records,
value `[last view ms, product ids]`), the carts awaiting an email, and the firing.
Timers are kept per partition beside its state (one entry per cart or visitor at a
time, in one-second buckets; activity only moves the due time, checked when the entry
comes up). Invariant: a trigger fires at most once per quiet period: the cart
remembers the activity time it fired for (`Cart.abandoned_at`, in its changelog
record), and a visitor's browsing entry is deleted when it fires, so neither a restart
nor a rebalance fires it twice.

Time: a partition's clock is the wall clock when the consumer has read its partitions
to the end, else the newest event time it has processed (its stream time). So a
lagging consumer that catches up fires what fell due, in order, and never fires for a
cart whose later events are still unread: those carry event times past the cart's
due time, and the clock does not pass them until they are read.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson

from ..journey.commands import Command
from .carts import Carts, cart_ms
from .compose import command, digest, money, put
from .records import Record, key

CART, BROWSE = 0, 1
MAX_VIEWED = 10
PREFIX = b"b"


class TriggerSettings(NamedTuple):
    cart_after_ms: int
    grace_ms: int
    browse_after_ms: int  # 0: browse abandonment off


TIMER_RESOLUTION_MS = 1000  # timers fall due at most this late


class Timers:
    """Due times, one entry per (kind, key) at a time, in buckets of
    `resolution_ms`: an entry costs a list slot (8 bytes) beside its key's slot in
    `armed`, not a heap tuple with its own due-time int per cart. An entry falls
    due when its due time rounded up to the resolution has come: never early, at most
    `resolution_ms` late; in due order across buckets, in arming order within one."""

    __slots__ = ("_buckets", "_heap", "_resolution", "armed")

    def __init__(self, resolution_ms: int = TIMER_RESOLUTION_MS) -> None:
        self._resolution = resolution_ms
        # bucket (its due time, rounded up, times 2, plus the kind) -> its keys
        self._buckets: dict[int, list[str]] = {}
        self._heap: list[int] = []  # the buckets, soonest first
        self.armed: tuple[set[str], set[str]] = (set(), set())  # the keys with an entry

    def arm(self, kind: int, name: str, due_ms: int) -> None:
        """An entry for `name` due at `due_ms`, unless it has one."""
        armed = self.armed[kind]
        if name not in armed:
            armed.add(name)
            bucket = -(-due_ms // self._resolution) * 2 + kind
            keys = self._buckets.get(bucket)
            if keys is None:
                self._buckets[bucket] = [name]
                heapq.heappush(self._heap, bucket)
            else:
                keys.append(name)

    def arm_many(self, kind: int, entries: Iterable[tuple[str, int]]) -> None:
        """`arm` for each (key, due time): a restore's carts."""
        for name, due_ms in entries:
            self.arm(kind, name, due_ms)

    def take_due(self, now_ms: int) -> list[tuple[int, str]]:
        """The entries due by `now_ms` as (kind, key), disarmed; the caller re-arms one
        if need be (for a later time: it is not in the list)."""
        heap, buckets, resolution = self._heap, self._buckets, self._resolution
        due: list[tuple[int, str]] = []
        while heap and (heap[0] >> 1) * resolution <= now_ms:
            bucket = heapq.heappop(heap)
            kind = bucket & 1
            armed = self.armed[kind]
            for name in buckets.pop(bucket):
                armed.discard(name)
                due.append((kind, name))
        return due

    def drop(self, name: str) -> None:
        """No entry for a key any more, of either kind (a forget request: rare, a scan)."""
        if name in self.armed[CART] or name in self.armed[BROWSE]:
            self.armed[CART].discard(name)
            self.armed[BROWSE].discard(name)
            for keys in self._buckets.values():
                while name in keys:
                    keys.remove(name)

    def __len__(self) -> int:
        return len(self.armed[CART]) + len(self.armed[BROWSE])


class Triggers:
    """A partition's timers and browsing, over its carts and cartless visitors (read
    only but for `Cart.abandoned_at`). With no settings, nothing is armed or fires."""

    prefix = PREFIX  # of its changelog keys
    __slots__ = (
        "_armed",
        "_awaiting",
        "_cart_after_ms",
        "_carts",
        "_changed",
        "_visitors",
        "browsing",
        "settings",
        "timers",
    )

    def __init__(
        self, settings: TriggerSettings | None, carts: Carts, visitors: dict[str, int]
    ) -> None:
        self.settings = settings
        self._cart_after_ms = settings.cart_after_ms if settings is not None else 0
        self.timers = Timers()
        self._armed = self.timers.armed[CART]  # `cart_active`
        self.browsing: dict[str, list[Any]] = {}  # visitor key -> [last view ms, product ids]
        self._changed: set[str] = set()  # browsing entries whose record is not written
        self._awaiting: dict[str, int] = {}  # quiet cart id -> its activity time
        self._carts = carts
        self._visitors = visitors  # cartless visitors' emails tracked

    # -- activity (the partition's apply) ----------------------------------------------

    def cart_active(self, cart_id: str, ts: int) -> None:
        """A cart changed at `ts`: armed to fall due `cart_after_ms` later (hot path:
        a cart already armed costs one set lookup)."""
        if cart_id not in self._armed:
            self.timers.arm(CART, cart_id, ts + self._cart_after_ms)

    def viewed(self, key: str | None, product_id: str, ts: int) -> None:
        """A product view by a cart or visitor (`key`): browsing, armed to fall due."""
        if key is None or self.settings is None:
            return
        entry = self.browsing.get(key)
        if entry is None:
            entry = self.browsing[key] = [ts, [product_id]]
        else:
            views: list[str] = entry[1]
            if not views or views[0] != product_id:  # else already the latest viewed
                if product_id in views:
                    views.remove(product_id)
                views.insert(0, product_id)
                if len(views) > MAX_VIEWED:
                    del views[MAX_VIEWED:]
            if ts > entry[0]:  # noqa: PLR1730  (per product view: no max())
                entry[0] = ts
        self._changed.add(key)
        self.timers.arm(BROWSE, key, entry[0] + self.settings.browse_after_ms)

    def added_to_cart(self, cart_id: str) -> None:
        """Added to cart: not a browse abandonment."""
        if self.browsing.pop(cart_id, None) is not None:
            self._changed.add(cart_id)

    def email_known(self, cart_id: str) -> None:
        """A quiet cart's email came: due at once (fired if still in its grace period)."""
        if cart_id in self._awaiting and self.settings is not None:
            self.timers.arm(CART, cart_id, 0)

    def cart_closed(self, cart_id: str) -> None:
        """A transaction closed the cart: neither trigger for it."""
        self._awaiting.pop(cart_id, None)
        self.added_to_cart(cart_id)

    def drop(self, name: str) -> list[Record]:
        """Erase a cart's or visitor's browsing, timers and wait for an email (a forget
        request): nothing fires for it afterwards. The browsing tombstone, if any."""
        self._awaiting.pop(name, None)
        self._changed.discard(name)
        self.timers.drop(name)
        if self.browsing.pop(name, None) is None:
            return []
        return [(key(PREFIX, name), None)]

    # -- firing ------------------------------------------------------------------------

    def fire_due(self, now_ms: int) -> list[Command]:
        """Trigger commands for the carts and visitors quiet long enough by `now_ms`."""
        if self.settings is None:
            return []
        fired: list[Command] = []
        for kind, name in self.timers.take_due(now_ms):
            fire = self._abandoned_cart if kind == CART else self._browse_abandoned
            if (cmd := fire(name, now_ms)) is not None:
                fired.append(cmd)
        return fired

    def _abandoned_cart(self, cart_id: str, now_ms: int) -> Command | None:
        settings = self.settings
        assert settings is not None
        cart = self._carts.held(cart_id)
        if cart is None or not cart.lines or cart.abandoned_at == cart.ts:
            self._awaiting.pop(cart_id, None)
            return None
        due = cart.ts + settings.cart_after_ms
        if due > now_ms:  # active since it was armed: wait for the new due time
            self.timers.arm(CART, cart_id, due)
            return None
        email = cart.email
        awaited = self._awaiting.pop(cart_id, None)
        if email is None:
            if now_ms <= due + settings.grace_ms:
                self._awaiting[cart_id] = cart.ts
            return None
        if awaited is not None and now_ms > due + settings.grace_ms:
            return None  # the email came after the grace period
        cart.abandoned_at = cart.ts
        cart.record = None
        self._carts.touched.add(cart_id)
        items = [
            put(
                put({"idProduct": pid, "quantity": line.quantity}, "productName", line.name),
                "priceunit",
                line.price,
            )
            for pid, line in cart.lines.items()
        ]
        args = {
            "name": "AbandonedCart",
            "idCart": cart_id,
            "TotalPrice": money(cart.total),
            "email": email,
            "items": items,
            "lastActivity": cart.ts,
        }
        cid = f"{cart_id}@abandoned@{cart.ts}.{digest(args)}"
        return command(cid, due, cart_id, email, "Trigger", args)

    def _browse_abandoned(self, name: str, now_ms: int) -> Command | None:
        settings = self.settings
        assert settings is not None
        entry = self.browsing.get(name)
        if entry is None:
            return None
        due = entry[0] + settings.browse_after_ms
        if due > now_ms:
            self.timers.arm(BROWSE, name, due)
            return None
        del self.browsing[name]
        self._changed.add(name)
        cart_id: str | None = name
        email = self._carts.email(name)
        if email is None and name in self._visitors:
            cart_id, email = None, name  # a cartless visitor, keyed by the email
        if email is None:
            return None
        args = {
            "name": "BrowseAbandonment",
            "email": email,
            "viewedProducts": list(entry[1]),
            "lastActivity": entry[0],
        }
        cid = f"{name}@browse@{entry[0]}.{digest(args)}"
        return command(cid, due, cart_id, email, "Trigger", args)

    def rearm(self, stream_ms: int) -> None:
        """Timers after a restore: carts active recently enough to fall due or still be
        in their grace period, and every browsing visitor."""
        settings = self.settings
        if settings is None:
            return
        after = settings.cart_after_ms
        horizon = stream_ms - after - settings.grace_ms
        recent = ((cart_id, cart_ms(c)) for cart_id, c in self._carts.carts.items())
        self.timers.arm_many(CART, ((cid, ts + after) for cid, ts in recent if ts >= horizon))
        after = settings.browse_after_ms
        self.timers.arm_many(BROWSE, ((n, e[0] + after) for n, e in self.browsing.items()))

    # -- durability of browsing --------------------------------------------------------

    def changes(self) -> list[Record]:
        browsing = self.browsing
        records: list[Record] = []
        for name in self._changed:
            entry = browsing.get(name)
            records.append((key(PREFIX, name), orjson.dumps(entry) if entry else None))
        self._changed.clear()
        return records

    def load(self, name: str, value: bytes | None) -> int:
        if value is None:
            self.browsing.pop(name, None)
        else:
            self.browsing[name] = orjson.loads(value)
        return 0

    def expire(self, now_ms: int) -> list[Record]:
        """Browsing is not expired by retention: an entry leaves when it fires."""
        return []

    def snapshot(self) -> dict[str, list[Any]]:
        return dict(self.browsing)


def trigger_record(command: Command, fired_ms: int) -> dict[str, Any]:
    """The triggers topic's Avro record (schemas/trigger.v1.avsc) for a Trigger command."""
    args = command["args"]
    return {
        "id": command["id"],
        "name": args["name"],
        "cartId": command["cartId"],
        "email": args["email"],
        "totalPrice": args.get("TotalPrice"),
        "lastActivity": args["lastActivity"],
        "firedAt": fired_ms,
        "items": [
            {
                "idProduct": item["idProduct"],
                "productName": item.get("productName"),
                "priceunit": item.get("priceunit"),
                "quantity": item["quantity"],
            }
            for item in args.get("items", ())
        ],
        "viewedProducts": args.get("viewedProducts", []),
    }
