"""Site event (decoded dict) -> one Change in the Journey vocabulary. Pure: no I/O.

`HANDLERS` is the vocabulary table: one entry per event name the pipeline understands.
Required fields raise InvalidEventError (the event is dead-lettered); fields the
browser integration validated but that the calls can do without are tallied in
`missing` and the event is still processed; other event names return None (skipped).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

from .errors import InvalidEventError

Event = dict[str, Any]
Missing = dict[tuple[str, str], int]

_NONE: dict[str, Any] = {}  # stands in for an absent nested record; never mutated
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class Line:
    """One cart or order line; mutable so cart updates need no new objects."""

    __hash__ = None  # type: ignore[assignment]  # mutable: compared, never hashed

    __slots__ = ("name", "price", "quantity", "subtotal")

    def __init__(
        self, name: str | None, price: float | None, quantity: int, subtotal: float | None = None
    ) -> None:
        self.name = name
        self.price = price
        self.quantity = quantity
        self.subtotal = subtotal

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Line) and (self.name, self.price, self.quantity) == (
            other.name,
            other.price,
            other.quantity,
        )

    def __repr__(self) -> str:
        return f"Line({self.name!r}, {self.price!r}, {self.quantity!r})"


class Snapshot(NamedTuple):
    """The cart as a Viewed Page showed it."""

    total: float | None
    step: int | None
    lines: dict[str, Line]


class PageView(NamedTuple):
    event_id: str
    ts: int
    cart_id: str | None
    email: str | None
    snapshot: Snapshot | None


class ProductView(NamedTuple):
    event_id: str
    ts: int
    cart_id: str | None
    email: str | None
    product_id: str


class LineChange(NamedTuple):
    """Added Product (added=True) or Removed Product; quantity None means 'default'."""

    event_id: str
    ts: int
    cart_id: str
    email: str | None
    product_id: str
    added: bool
    quantity: int | None
    name: str | None
    price: float | None


class Purchase(NamedTuple):
    event_id: str
    ts: int
    cart_id: str | None
    email: str | None
    order_id: str
    affiliation: str | None
    revenue: float | None
    tax: float | None
    shipping: float | None
    lines: list[tuple[str, Line]]


Change = PageView | ProductView | LineChange | Purchase


class Identity:
    """Normalises user.email (trimmed, lower-cased, checked) and counts addresses that
    are present but not e-mails (they are not sent). A visitor's address repeats on
    every event, so results are memoised in a bounded table."""

    __slots__ = ("_known", "invalid")
    MEMO_SIZE = 65_536

    def __init__(self) -> None:
        self.invalid = 0
        self._known: dict[str, str] = {}  # raw -> normalised, "" when not an e-mail

    def email(self, event: Event) -> str | None:
        raw = (event.get("user") or _NONE).get("email")
        if not raw:
            return None
        email = self._known.get(raw)
        if email is None:
            email = raw.strip().lower()
            if not _EMAIL_RE.fullmatch(email):
                email = ""
            if len(self._known) >= self.MEMO_SIZE:
                self._known.clear()
            self._known[raw] = email
        if email:
            return email
        self.invalid += 1
        return None


def _tally(missing: Missing, event: str, field: str) -> None:
    key = (event, field)
    missing[key] = missing.get(key, 0) + 1


def _price(product: dict[str, Any]) -> float | None:
    price = product.get("unitSalePrice")
    return product.get("unitPrice") if price is None else price


def _lines(
    items: list[dict[str, Any]], event: str, missing: Missing, order: bool
) -> list[tuple[str, Line]]:
    """Line items with a product id; the others are tallied as missing and left out."""
    out = []
    for item in items:
        product = item["product"]
        product_id = product.get("id")
        quantity = item.get("quantity")
        if not product_id:
            _tally(missing, event, "lineItems.product.id")
            continue
        if product.get("name") is None:
            _tally(missing, event, "lineItems.product.name")
        if product.get("unitSalePrice") is None:
            _tally(missing, event, "lineItems.product.unitSalePrice")
        if quantity is None:
            _tally(missing, event, "lineItems.quantity")
            quantity = 1
        if order and item.get("subtotal") is None:
            _tally(missing, event, "lineItems.subtotal")
        out.append(
            (product_id, Line(product.get("name"), _price(product), quantity, item.get("subtotal")))
        )
    return out


def _viewed_page(ev: Event, email: str | None, missing: Missing) -> PageView:
    name = "Viewed Page"
    if email is None:
        _tally(missing, name, "user.email")
    cart = ev.get("cart") or _NONE
    cart_id = cart.get("id")
    if not cart_id:
        _tally(missing, name, "cart.id")
        return PageView(ev["id"], ev["timestamp"], None, email, None)
    if cart.get("total") is None:
        _tally(missing, name, "cart.total")
    if cart.get("checkoutStep") is None:
        _tally(missing, name, "cart.checkoutStep")
    lines = dict(_lines(cart.get("lineItems") or [], name, missing, order=False))
    snapshot = Snapshot(cart.get("total"), cart.get("checkoutStep"), lines)
    return PageView(ev["id"], ev["timestamp"], cart_id, email, snapshot)


def _cart_id(ev: Event) -> str | None:
    cart_id: str | None = (ev.get("cart") or _NONE).get("id")
    return cart_id


def _viewed_product(ev: Event, email: str | None, missing: Missing) -> ProductView:
    product = ev.get("product") or _NONE
    product_id = product.get("id")
    if not product_id:
        raise InvalidEventError("product.id")
    return ProductView(ev["id"], ev["timestamp"], _cart_id(ev), email, product_id)


def _line_change(added: bool) -> Callable[[Event, str | None, Missing], LineChange]:
    name = "Added Product" if added else "Removed Product"

    def handler(ev: Event, email: str | None, missing: Missing) -> LineChange:
        cart_id = _cart_id(ev)
        if not cart_id:
            raise InvalidEventError("cart.id")
        product = ev.get("product") or _NONE
        product_id = product.get("id")
        if not product_id:
            raise InvalidEventError("product.id")
        quantity = ev.get("quantity")
        if added:
            if product.get("name") is None:
                _tally(missing, name, "product.name")
            if product.get("unitSalePrice") is None:
                _tally(missing, name, "product.unitSalePrice")
            if quantity is None:
                _tally(missing, name, "quantity")
        return LineChange(
            ev["id"],
            ev["timestamp"],
            cart_id,
            email,
            product_id,
            added,
            quantity,
            product.get("name"),
            _price(product),
        )

    return handler


def _completed_transaction(ev: Event, email: str | None, missing: Missing) -> Purchase:
    name = "Completed Transaction"
    tx = ev.get("transaction") or _NONE
    order_id = tx.get("orderId")
    if not order_id:
        raise InvalidEventError("transaction.orderId")
    for field in ("cartId", "total", "tax", "shippingCost", "affiliation"):
        if tx.get(field) is None:
            _tally(missing, name, f"transaction.{field}")
    return Purchase(
        ev["id"],
        ev["timestamp"],
        tx.get("cartId") or _cart_id(ev),
        email,
        order_id,
        tx.get("affiliation"),
        tx.get("total"),
        tx.get("tax"),
        tx.get("shippingCost"),
        _lines(tx.get("lineItems") or [], name, missing, order=True),
    )


HANDLERS: dict[str, Callable[[Event, str | None, Missing], Change]] = {
    "Viewed Page": _viewed_page,
    "Viewed Product Detail": _viewed_product,
    "Added Product": _line_change(added=True),
    "Removed Product": _line_change(added=False),
    "Completed Transaction": _completed_transaction,
}
EVENT_NAMES = tuple(HANDLERS)


def normalise(event: Event, identity: Identity, missing: Missing) -> Change | None:
    """The event's Change, or None for an event name outside the vocabulary."""
    handler = HANDLERS.get(event["name"])
    if handler is None:
        return None
    return handler(event, identity.email(event), missing)
