"""The vocabulary's values: one Change per site event, in the Journey's terms.

`normalise` makes them, the partition state folds them in. Plain classes, read-only by
convention, and not named tuples: compiled with mypyc (wheels), making one is a native
call, where a named tuple's `__new__` is Python code run once per event (1.7 % of the
loop thread's samples, docs/benchmarks.md, 2026-12-07 (evening)). `Line` is the one that
cart updates change in place (no new object per event).
"""

from __future__ import annotations

from typing import ClassVar, final


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


class _Value:
    """Equal by type and fields, shown with them: what the tests compare and print."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]  # compared, never hashed
    FIELDS: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.FIELDS)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self._values()!r}"


@final
class Snapshot(_Value):
    """The cart as a Viewed Page showed it. `lines` None: the lines the cart holds, as
    the page's items were those of the page the cart shows (`page`, normalise.Pages);
    `page` 0: not to be remembered (its items were read by another reader, or tallied
    missing fields)."""

    FIELDS = ("total", "step", "lines", "page")
    __slots__ = FIELDS  # the fields in their order

    def __init__(
        self, total: float | None, step: int | None, lines: dict[str, Line] | None, page: int
    ) -> None:
        self.total = total
        self.step = step
        self.lines = lines
        self.page = page


@final
class PageView(_Value):
    FIELDS = ("event_id", "ts", "cart_id", "email", "snapshot")
    __slots__ = FIELDS  # the fields in their order

    def __init__(
        self,
        event_id: str,
        ts: int,
        cart_id: str | None,
        email: str | None,
        snapshot: Snapshot | None,
    ) -> None:
        self.event_id = event_id
        self.ts = ts
        self.cart_id = cart_id
        self.email = email
        self.snapshot = snapshot


@final
class ProductView(_Value):
    FIELDS = ("event_id", "ts", "cart_id", "email", "product_id")
    __slots__ = FIELDS  # the fields in their order

    def __init__(
        self, event_id: str, ts: int, cart_id: str | None, email: str | None, product_id: str
    ) -> None:
        self.event_id = event_id
        self.ts = ts
        self.cart_id = cart_id
        self.email = email
        self.product_id = product_id


@final
class LineChange(_Value):
    """Added Product (added=True) or Removed Product; quantity None means 'default'.
    name and price are read for Added Product only (None for Removed Product)."""

    FIELDS = (
        "event_id",
        "ts",
        "cart_id",
        "email",
        "product_id",
        "added",
        "quantity",
        "name",
        "price",
    )
    __slots__ = FIELDS  # the fields in their order

    def __init__(  # noqa: PLR0917  (the change's fields in their order, made per event)
        self,
        event_id: str,
        ts: int,
        cart_id: str,
        email: str | None,
        product_id: str,
        added: bool,
        quantity: int | None,
        name: str | None,
        price: float | None,
    ) -> None:
        self.event_id = event_id
        self.ts = ts
        self.cart_id = cart_id
        self.email = email
        self.product_id = product_id
        self.added = added
        self.quantity = quantity
        self.name = name
        self.price = price


@final
class Purchase(_Value):
    FIELDS = (
        "event_id",
        "ts",
        "cart_id",
        "email",
        "order_id",
        "affiliation",
        "revenue",
        "tax",
        "shipping",
        "lines",
    )
    __slots__ = FIELDS  # the fields in their order

    def __init__(  # noqa: PLR0917  (the change's fields in their order, made per event)
        self,
        event_id: str,
        ts: int,
        cart_id: str | None,
        email: str | None,
        order_id: str,
        affiliation: str | None,
        revenue: float | None,
        tax: float | None,
        shipping: float | None,
        lines: list[tuple[str, Line]],
    ) -> None:
        self.event_id = event_id
        self.ts = ts
        self.cart_id = cart_id
        self.email = email
        self.order_id = order_id
        self.affiliation = affiliation
        self.revenue = revenue
        self.tax = tax
        self.shipping = shipping
        self.lines = lines


Change = PageView | ProductView | LineChange | Purchase
