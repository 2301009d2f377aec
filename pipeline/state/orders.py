"""Orders: each transaction is sent to Journey once, whatever replays or repeats it.

Owns the `o<order id>` records (value: the order's event time, JSON) and composes a
transaction's commands. Invariant: an order id in `orders` has had its commands sent;
it is forgotten, with a tombstone, once the stream time is `retention_ms` past it.
"""

from __future__ import annotations

import orjson

from ..journey.commands import Command
from ..source.changes import Purchase
from .compose import command, money, put
from .records import Record, key

PREFIX = b"o"


class Orders:
    """The orders sent, by id, with their event time."""

    prefix = PREFIX  # of its changelog keys

    __slots__ = ("_new", "orders", "retention_ms")

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self.orders: dict[str, int] = {}  # order id -> event time
        self._new: list[str] = []

    def first(self, order_id: str, ts: int) -> bool:
        """Record the order; False when it was recorded already (a repeated transaction)."""
        if order_id in self.orders:
            return False
        self.orders[order_id] = ts
        self._new.append(order_id)
        return True

    def changes(self) -> list[Record]:
        orders = self.orders
        records: list[Record] = [
            (key(PREFIX, order_id), orjson.dumps(orders[order_id]))
            for order_id in self._new
            if order_id in orders  # else it expired already: its tombstone is written
        ]
        self._new.clear()
        return records

    def load(self, name: str, value: bytes | None) -> int:
        if value is None:
            self.orders.pop(name, None)
        else:
            self.orders[name] = orjson.loads(value)
        return 0  # an order's time does not move the stream time on restore

    def expire(self, now_ms: int) -> list[Record]:
        before = now_ms - self.retention_ms
        gone: list[Record] = []
        for order_id in [o for o, ms in self.orders.items() if ms < before]:
            del self.orders[order_id]
            gone.append((key(PREFIX, order_id), None))
        return gone

    def snapshot(self) -> dict[str, int]:
        return dict(self.orders)


def transaction(p: Purchase, n: int, email: str | None, out: list[Command]) -> None:
    """AddTransaction, an AddItem per line, SubmitTransaction: ids `<event id>/<n>` on."""
    order, cart_id = p.order_id, p.cart_id
    args = put({"idTransaction": order}, "idCart", cart_id)
    put(
        put(put(put(args, "affiliation", p.affiliation), "revenue", p.revenue), "tax", p.tax),
        "shipping",
        p.shipping,
    )
    out.append(command(f"{p.event_id}/{n}", p.ts, cart_id, email, "ECommerce.AddTransaction", args))
    for product_id, line in p.lines:
        n += 1
        item = put(
            {"idTransaction": order, "idProduct": product_id, "quantity": line.quantity},
            "idCart",
            cart_id,
        )
        put(item, "productName", line.name)
        put(item, "Price_unit", line.price)
        total = line.subtotal
        if total is None and line.price is not None:
            total = money(line.price * line.quantity)
        put(item, "Price_total", total)
        out.append(command(f"{p.event_id}/{n}", p.ts, cart_id, email, "ECommerce.AddItem", item))
    out.append(
        command(
            f"{p.event_id}/{n + 1}",
            p.ts,
            cart_id,
            email,
            "ECommerce.SubmitTransaction",
            {"idTransaction": order},
        )
    )
