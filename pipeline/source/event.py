"""A decoded site event: `schemas/site_event` (newest version) as plain native objects.

Why objects and not the dicts fastavro makes: on the hot path, building the nested
dicts of each event and reading them back by key were the largest items of the loop
thread after reference counting (docs/benchmarks.md, 2026-12-07). Compiled with mypyc
(wheels), these are native classes: making one is a struct filled in, reading a field
is a load at a fixed offset, and no key is hashed. The SiteEvent reader
(site_reader.py) makes them straight from the Avro body; a record from any other reader
(fastavro, cavro, a test's dict) becomes one with `SiteEvent.of`, and `record()` gives
it back as fastavro's dict (what `explain` prints and the tests compare with fastavro).
Attribute names are the schema's, in snake case; the values are exactly fastavro's.
"""

from __future__ import annotations

from typing import Any, final

Record = dict[str, Any]


@final
class Product:
    __slots__ = ("id", "name", "unit_price", "unit_sale_price")

    def __init__(
        self,
        id: str | None,
        name: str | None,
        unit_sale_price: float | None,
        unit_price: float | None,
    ) -> None:
        self.id = id
        self.name = name
        self.unit_sale_price = unit_sale_price
        self.unit_price = unit_price

    @staticmethod
    def of(r: Record) -> Product:
        return Product(r.get("id"), r.get("name"), r.get("unitSalePrice"), r.get("unitPrice"))

    def record(self) -> Record:
        return {
            "id": self.id,
            "name": self.name,
            "unitSalePrice": self.unit_sale_price,
            "unitPrice": self.unit_price,
        }


_NO_PRODUCT = Product(None, None, None, None)


@final
class LineItem:
    __slots__ = ("product", "quantity", "subtotal")

    def __init__(self, product: Product, quantity: int | None, subtotal: float | None) -> None:
        self.product = product
        self.quantity = quantity
        self.subtotal = subtotal

    @staticmethod
    def of(r: Record) -> LineItem:
        product = r.get("product")
        return LineItem(
            _NO_PRODUCT if product is None else Product.of(product),
            r.get("quantity"),
            r.get("subtotal"),
        )

    def record(self) -> Record:
        return {
            "product": self.product.record(),
            "quantity": self.quantity,
            "subtotal": self.subtotal,
        }


def _items(records: list[Record] | None) -> list[LineItem]:
    return [LineItem.of(r) for r in records or ()]


@final
class User:
    __slots__ = ("email", "user_id")

    def __init__(self, email: str | None, user_id: str | None) -> None:
        self.email = email
        self.user_id = user_id

    def record(self) -> Record:
        return {"email": self.email, "userId": self.user_id}


@final
class Cart:
    """`items()` gives the line items. The SiteEvent reader leaves a cart's items unread,
    as their Avro bytes (`items_raw`): most pages show a cart as it was, and the state
    tells that by the bytes' hash (normalise.py) without any item made."""

    __slots__ = ("_items", "checkout_step", "currency", "id", "items_raw", "total")

    def __init__(  # noqa: PLR0917  (the schema's fields in its order, made per event)
        self,
        id: str | None,
        total: float | None,
        currency: str | None,
        checkout_step: int | None,
        line_items: list[LineItem] | None,
        items_raw: bytes | None = None,
    ) -> None:
        """`line_items` read, or None with `items_raw`: the bytes of the lineItems array."""
        self.id = id
        self.total = total
        self.currency = currency
        self.checkout_step = checkout_step
        self._items = line_items
        self.items_raw = items_raw

    def items(self) -> list[LineItem]:
        """The line items, read from `items_raw` on the first call if they were left
        unread (DecodeError when those bytes do not read whole)."""
        items = self._items
        if items is None:
            from .site_reader import read_items  # it imports this module

            assert self.items_raw is not None  # the one or the other, as made
            items = self._items = read_items(self.items_raw)
        return items

    def record(self) -> Record:
        return {
            "id": self.id,
            "total": self.total,
            "currency": self.currency,
            "checkoutStep": self.checkout_step,
            "lineItems": [item.record() for item in self.items()],
        }


@final
class Transaction:
    __slots__ = (
        "affiliation",
        "cart_id",
        "line_items",
        "order_id",
        "shipping_cost",
        "tax",
        "total",
    )

    def __init__(  # noqa: PLR0917  (the schema's fields in its order, made per event)
        self,
        order_id: str | None,
        cart_id: str | None,
        total: float | None,
        tax: float | None,
        shipping_cost: float | None,
        affiliation: str | None,
        line_items: list[LineItem],
    ) -> None:
        self.order_id = order_id
        self.cart_id = cart_id
        self.total = total
        self.tax = tax
        self.shipping_cost = shipping_cost
        self.affiliation = affiliation
        self.line_items = line_items

    def record(self) -> Record:
        return {
            "orderId": self.order_id,
            "cartId": self.cart_id,
            "total": self.total,
            "tax": self.tax,
            "shippingCost": self.shipping_cost,
            "affiliation": self.affiliation,
            "lineItems": [item.record() for item in self.line_items],
        }


@final
class SiteEvent:
    __slots__ = ("cart", "id", "name", "product", "quantity", "timestamp", "transaction", "user")

    def __init__(  # noqa: PLR0917  (the schema's fields in its order, made per event)
        self,
        id: str,
        name: str,
        timestamp: int,
        user: User | None,
        cart: Cart | None,
        product: Product | None,
        quantity: int | None,
        transaction: Transaction | None,
    ) -> None:
        self.id = id
        self.name = name
        self.timestamp = timestamp
        self.user = user
        self.cart = cart
        self.product = product
        self.quantity = quantity
        self.transaction = transaction

    @staticmethod
    def of(r: Record) -> SiteEvent:
        """The event of a record in fastavro's shape (absent fields take the schema's
        defaults, so a test's partial dict reads as the writer's would)."""
        user = r.get("user")
        cart = r.get("cart")
        product = r.get("product")
        tx = r.get("transaction")
        return SiteEvent(
            r["id"],
            r["name"],
            r["timestamp"],
            None if user is None else User(user.get("email"), user.get("userId")),
            None
            if cart is None
            else Cart(
                cart.get("id"),
                cart.get("total"),
                cart.get("currency"),
                cart.get("checkoutStep"),
                _items(cart.get("lineItems")),
            ),
            None if product is None else Product.of(product),
            r.get("quantity"),
            None
            if tx is None
            else Transaction(
                tx.get("orderId"),
                tx.get("cartId"),
                tx.get("total"),
                tx.get("tax"),
                tx.get("shippingCost"),
                tx.get("affiliation"),
                _items(tx.get("lineItems")),
            ),
        )

    def record(self) -> Record:
        """The event as fastavro's dict for the newest schema."""
        user, cart, product, tx = self.user, self.cart, self.product, self.transaction
        return {
            "id": self.id,
            "name": self.name,
            "timestamp": self.timestamp,
            "user": None if user is None else user.record(),
            "cart": None if cart is None else cart.record(),
            "product": None if product is None else product.record(),
            "quantity": self.quantity,
            "transaction": None if tx is None else tx.record(),
        }
