"""The vocabulary's values: one Change per site event, in the Journey's terms.

`normalise` makes them, the partition state folds them in. Immutable named tuples,
except `Line`, which cart updates change in place (no new object per event).
"""

from __future__ import annotations

from typing import NamedTuple


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
    """The cart as a Viewed Page showed it. `lines` None: the lines the cart holds, as
    the page's items were those of the page the cart shows (`page`, normalise.Pages);
    `page` 0: not to be remembered (its items were read by another reader, or tallied
    missing fields)."""

    total: float | None
    step: int | None
    lines: dict[str, Line] | None
    page: int


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
    """Added Product (added=True) or Removed Product; quantity None means 'default'.
    name and price are read for Added Product only (None for Removed Product)."""

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
