"""Realistic shop traffic for the demo, the tests and the benchmark.

Visitors browse, add and remove, some buy and some abandon; each visitor's events are
keyed by its cart id, and event ids are UUIDs (as DigitalDataManager makes them). Now
and then a product goes on sale for a visitor: the cart page shows the new unit price
(a price-only change of the cart) and later adds and orders use it. On request,
replays (the same event id again) and bad records (undecodable bytes, events missing
what they need, event names outside the vocabulary) are mixed in. Deterministic for a
seed: ids and prices come from the seeded generator too.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from ..source.schemas import SchemaFamily

Event = dict[str, Any]
_PRODUCTS = [(f"sku-{i}", f"Product {i}", round(99.0 + (i * 37) % 4900, 2)) for i in range(200)]


_SALE_FACTORS = (0.7, 0.75, 0.8, 0.85, 0.9)
# Upper bounds of a visitor's next step: page view, product detail, add, remove, order,
# next checkout step; above the last, the visitor abandons.
_STEPS = (0.35, 0.65, 0.85, 0.90, 0.94, 0.97)


def _steps(page_views: float | None) -> tuple[float, ...]:
    """The step bounds with page views at `page_views` and the other steps scaled to the
    rest (None: the default mix, exactly, so seeded streams stay as they were)."""
    if page_views is None:
        return _STEPS
    if not 0.0 <= page_views < 1.0:
        raise ValueError(f"page_views must be in [0, 1): {page_views}")
    scale = (1.0 - page_views) / (1.0 - _STEPS[0])
    return (page_views, *(page_views + (b - _STEPS[0]) * scale for b in _STEPS[1:]))


class _Visitor:
    __slots__ = ("cart_id", "email", "lines", "orders", "prices", "step")

    def __init__(self, cart_id: str, email: str | None) -> None:
        self.cart_id = cart_id
        self.email = email
        self.lines: dict[str, int] = {}
        self.prices: dict[str, float] = {}  # product id -> the price this visitor now sees
        self.step = 1
        self.orders = 0

    def product(self, pid: str) -> dict[str, Any]:
        _, name, price = _PRODUCTS[int(pid[4:])]
        return {"id": pid, "name": name, "unitSalePrice": self.prices.get(pid, price)}


class ShopTraffic:
    """An endless, seeded stream of (key, event, bad_value) triples.

    `bad_value` is None for a proper event and raw bytes for an undecodable record.
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        visitors: int = 1000,
        duplicate_rate: float = 0.0,
        invalid_rate: float = 0.0,
        email_rate: float = 0.7,
        sale_rate: float = 0.02,
        clock: Callable[[], int] | None = None,
        prefix: str = "c",
        page_views: float | None = None,
        cart_lines: int = 0,
    ) -> None:
        """`page_views`: the share of a visitor's steps that are page views carrying the
        full cart (None: the default mix); `cart_lines`: the lines each new visitor's cart
        already holds (a returning shopper's saved cart), so page views carry heavy carts."""
        self._rng = random.Random(seed)
        self._bounds = _steps(page_views)
        self._cart_lines = cart_lines
        self._duplicate_rate = duplicate_rate
        self._invalid_rate = invalid_rate
        self._email_rate = email_rate
        self._sale_rate = sale_rate
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._prefix = prefix
        self._next_visitor = 0
        self._visitors = [self._new_visitor() for _ in range(visitors)]
        self._last: tuple[str, Event] | None = None

    def _new_visitor(self) -> _Visitor:
        self._next_visitor += 1
        n = self._next_visitor
        email = f"Visitor{n}@Example.com " if self._rng.random() < self._email_rate else None
        visitor = _Visitor(f"{self._prefix}-{n}", email)
        for _ in range(self._cart_lines):
            pid = _PRODUCTS[self._rng.randrange(len(_PRODUCTS))][0]
            visitor.lines[pid] = visitor.lines.get(pid, 0) + 1
        return visitor

    def _event(self, name: str, visitor: _Visitor, **fields: Any) -> Event:
        event: Event = {
            "id": str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
            "name": name,
            "timestamp": self._clock(),
            "cart": {"id": visitor.cart_id},
        }
        if visitor.email:
            event["user"] = {"email": visitor.email}
        event.update(fields)
        return event

    @staticmethod
    def _line(visitor: _Visitor, pid: str, quantity: int) -> dict[str, Any]:
        product = visitor.product(pid)
        return {
            "product": product,
            "quantity": quantity,
            "subtotal": round(product["unitSalePrice"] * quantity, 2),
        }

    def _snapshot(self, visitor: _Visitor) -> dict[str, Any]:
        items = [self._line(visitor, pid, q) for pid, q in visitor.lines.items()]
        return {
            "id": visitor.cart_id,
            "checkoutStep": visitor.step,
            "lineItems": items,
            "total": round(sum(item["subtotal"] for item in items), 2),
        }

    def _step(self, visitor: _Visitor) -> tuple[Event | None, bool]:
        """The visitor's next event, and whether the visit ends with it."""
        rng = self._rng
        if rng.random() < self._sale_rate:
            return self._sale(visitor), False
        roll = rng.random()
        view, detail, add, remove, order, step = self._bounds
        if roll < view:
            if rng.random() < 0.05 and not visitor.email:
                visitor.email = f"late{visitor.cart_id}@example.com"
            return self._event("Viewed Page", visitor, cart=self._snapshot(visitor)), False
        pid = _PRODUCTS[rng.randrange(len(_PRODUCTS))][0]
        product = visitor.product(pid)
        if roll < detail:
            return self._event("Viewed Product Detail", visitor, product=product), False
        if roll < add:
            quantity = rng.choice((1, 1, 1, 2, 3))
            visitor.lines[pid] = visitor.lines.get(pid, 0) + quantity
            return self._event("Added Product", visitor, product=product, quantity=quantity), False
        if roll < remove and visitor.lines:
            pid = rng.choice(list(visitor.lines))
            taken: int | None = None
            if rng.random() < 0.5 or visitor.lines[pid] == 1:
                del visitor.lines[pid]
            else:
                visitor.lines[pid] -= 1
                taken = 1
            return self._event(
                "Removed Product",
                visitor,
                quantity=taken,
                product=visitor.product(pid),
            ), False
        if roll < order and visitor.lines:
            visitor.orders += 1
            items = [self._line(visitor, p, q) for p, q in visitor.lines.items()]
            total = round(sum(item["subtotal"] for item in items), 2)
            event = self._event(
                "Completed Transaction",
                visitor,
                transaction={
                    "orderId": f"o-{visitor.cart_id}-{visitor.orders}",
                    "cartId": visitor.cart_id,
                    "total": total,
                    "tax": round(total * 0.2, 2),
                    "shippingCost": 300.0,
                    "affiliation": "web",
                    "lineItems": items,
                },
            )
            return event, True
        if roll < step:
            visitor.step = min(visitor.step + 1, 4)
            return None, False
        return None, True  # abandons the cart

    def _sale(self, visitor: _Visitor) -> Event:
        """A product's price changes (a sale starts, or a sale price moves) for the visitor;
        the cart page then shows it: for a product in the cart, a price-only change."""
        rng = self._rng
        if visitor.lines and rng.random() < 0.8:
            pid = rng.choice(list(visitor.lines))
        else:
            pid = _PRODUCTS[rng.randrange(len(_PRODUCTS))][0]
        base = _PRODUCTS[int(pid[4:])][2]
        price = round(base * rng.choice(_SALE_FACTORS), 2)
        if price == visitor.prices.get(pid):  # the same sale again: back to the list price
            price = base
        visitor.prices[pid] = price
        return self._event("Viewed Page", visitor, cart=self._snapshot(visitor))

    def _invalid(self) -> tuple[str, Event | None, bytes | None]:
        kind = self._rng.randrange(3)
        visitor = self._visitors[0]
        if kind == 0:
            return visitor.cart_id, None, b"\xc3\x01not-avro-at-all"
        if kind == 1:
            return (
                visitor.cart_id,
                self._event("Added Product", visitor, product={"name": "no id"}),
                None,
            )
        return visitor.cart_id, self._event("Viewed Checkout Step", visitor), None

    def __iter__(self) -> Iterator[tuple[str, Event | None, bytes | None]]:
        rng = self._rng
        while True:
            if self._last is not None and rng.random() < self._duplicate_rate:
                yield self._last[0], self._last[1], None
                continue
            if rng.random() < self._invalid_rate:
                yield self._invalid()
                continue
            index = rng.randrange(len(self._visitors))
            visitor = self._visitors[index]
            event, done = self._step(visitor)
            if done:
                self._visitors[index] = self._new_visitor()
            if event is not None:
                self._last = (visitor.cart_id, event)
                yield visitor.cart_id, event, None


class Encoder:
    """Event -> record value in the chosen framing."""

    def __init__(
        self, family: SchemaFamily, registry_url: str | None = None, subject: str | None = None
    ) -> None:
        self._family = family
        self._prefix: bytes | None = None
        if registry_url:
            import orjson
            from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

            client = SchemaRegistryClient({"url": registry_url})
            schema = Schema(orjson.dumps(family.newest.raw).decode(), "AVRO")
            try:
                schema_id = client.register_schema(subject or "site-events-value", schema)
            finally:
                client.close()
            self._prefix = b"\x00" + schema_id.to_bytes(4, "big")

    def __call__(self, event: Event) -> bytes:
        if self._prefix is None:
            return self._family.encode_single_object(event)
        return self._prefix + self._family.encode_single_object(event)[10:]


def encoded(traffic: ShopTraffic, encode: Callable[[Event], bytes]) -> Iterator[tuple[str, bytes]]:
    for key, event, bad in traffic:
        yield key, bad if bad is not None else encode(event)  # type: ignore[arg-type]
