"""Site event (event.py) -> one Change in the Journey vocabulary. Pure: no I/O.

`HANDLERS` is the vocabulary table: one entry per event name the pipeline understands.
Required fields raise InvalidEventError (the event is dead-lettered); fields the
browser integration validated but that the calls can do without are tallied in
`missing` and the event is still processed; other event names return None (skipped).

Values that decode but make no sense (docs/mapping.md, "Values that make no sense"),
bounded by `Limits`: an amount (price, subtotal, total, tax, shipping) that is NaN,
infinite, negative or over `max_price`, a quantity outside 1..`max_quantity`, or an id
longer than `max_id_chars` raises InvalidEventError with reason "invalid-value" naming
the field; a free-text field longer than `max_text_chars` and a checkout step outside
0..`max_checkout_step` are dropped (left out of the command) and tallied in `missing`
as `<field>:too-long` / `<field>:out-of-range`. Only values a Journey call carries are
checked. The checks are plain comparisons: `not (0.0 <= x <= max)` is also true for NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ..errors import InvalidEventError
from .changes import Change, Line, LineChange, PageView, ProductView, Purchase, Snapshot
from .event import LineItem, Product, Record, SiteEvent
from .identity import Identity

Missing = dict[tuple[str, str], int]


class Limits(NamedTuple):
    """Bounds beyond which a value makes no sense (docs/mapping.md)."""

    max_quantity: int = 10_000  # OFSYS_MAX_QUANTITY: line quantities are 1..max_quantity
    max_price: float = 1e9  # every amount (prices, subtotals, totals, tax, shipping): 0..max
    max_id_chars: int = 255  # event id, cart, product, order ids: longer is dead-lettered
    max_text_chars: int = 1000  # product names, affiliation: longer is dropped and counted
    max_checkout_step: int = 100  # cart.checkoutStep: 0..max, else dropped and counted


DEFAULT_LIMITS = Limits()


def _bad_amount(field: str, value: Any, limits: Limits) -> InvalidEventError:
    return InvalidEventError(
        field,
        reason="invalid-value",
        detail=f"{field} is {value!r}, not an amount in 0..{limits.max_price:.0f}",
    )


def _bad_quantity(field: str, value: Any, limits: Limits) -> InvalidEventError:
    return InvalidEventError(
        field,
        reason="invalid-value",
        detail=f"{field} is {value!r}, not a quantity in 1..{limits.max_quantity}",
    )


def _too_long(field: str, value: str, limits: Limits) -> InvalidEventError:
    return InvalidEventError(
        field,
        reason="invalid-value",
        detail=f"{field} is {len(value)} characters, more than {limits.max_id_chars}",
    )


# The page a cart shows: cart id -> the hash of the lineItems bytes of the page view its
# lines came from, 0 for none known. A page whose items hash the same shows the cart's
# lines as they are (SipHash, 64 bits: two different item lists of one cart share a hash
# with probability 2**-64), and they are not read again: most pages show an unchanged cart.
Pages = Callable[[str], int]
Handler = Callable[[SiteEvent, str | None, Missing, Limits, Pages], Change]


def no_pages(cart_id: str) -> int:
    """No page known for any cart: every page's items are read."""
    return 0


def _tally(missing: Missing, event: str, field: str) -> int:
    """Count a missing field; 1, for the caller's own count."""
    key = (event, field)
    missing[key] = missing.get(key, 0) + 1
    return 1


def _lines(
    items: list[LineItem], event: str, missing: Missing, order: bool, limits: Limits
) -> tuple[list[tuple[str, Line]], int]:
    """Line items with a product id, and how many fields were tallied; the lines without
    one are tallied as missing and left out. A cart snapshot's line with quantity 0 is
    not in the cart: left out, not tallied. The price is unitSalePrice, else unitPrice
    (the sale price then tallied as missing)."""
    out = []
    tallied = 0
    max_quantity, max_price, max_id, max_text, _ = limits  # once per event, not per line
    for item in items:
        product = item.product
        product_id = product.id
        if not product_id:
            tallied += _tally(missing, event, "lineItems.product.id")
            continue
        quantity = item.quantity
        if quantity is None:
            tallied += _tally(missing, event, "lineItems.quantity")
            quantity = 1
        elif not (0 < quantity <= max_quantity):
            if quantity == 0 and not order:
                continue
            raise _bad_quantity("lineItems.quantity", quantity, limits)
        if len(product_id) > max_id:
            raise _too_long("lineItems.product.id", product_id, limits)
        name = product.name
        if name is None:
            tallied += _tally(missing, event, "lineItems.product.name")
        elif len(name) > max_text:
            tallied += _tally(missing, event, "lineItems.product.name:too-long")
            name = None
        price = product.unit_sale_price
        if price is None:
            tallied += _tally(missing, event, "lineItems.product.unitSalePrice")
            price = product.unit_price
            if price is not None and not (0.0 <= price <= max_price):
                raise _bad_amount("lineItems.product.unitPrice", price, limits)
        elif not (0.0 <= price <= max_price):
            raise _bad_amount("lineItems.product.unitSalePrice", price, limits)
        subtotal = None
        if order:
            subtotal = item.subtotal
            if subtotal is None:
                tallied += _tally(missing, event, "lineItems.subtotal")
            elif not (0.0 <= subtotal <= max_price):
                raise _bad_amount("lineItems.subtotal", subtotal, limits)
        out.append((product_id, Line(name, price, quantity, subtotal)))
    return out, tallied


def _viewed_page(
    ev: SiteEvent, email: str | None, missing: Missing, limits: Limits, pages: Pages
) -> PageView:
    name = "Viewed Page"
    if email is None:
        _tally(missing, name, "user.email")
    cart = ev.cart
    cart_id = None if cart is None else cart.id
    if cart is None or not cart_id:
        _tally(missing, name, "cart.id")
        return PageView(ev.id, ev.timestamp, None, email, None)
    if len(cart_id) > limits.max_id_chars:
        raise _too_long("cart.id", cart_id, limits)
    total = cart.total
    if total is None:
        _tally(missing, name, "cart.total")
    elif not (0.0 <= total <= limits.max_price):
        raise _bad_amount("cart.total", total, limits)
    step = cart.checkout_step
    if step is None:
        _tally(missing, name, "cart.checkoutStep")
    elif not (0 <= step <= limits.max_checkout_step):
        _tally(missing, name, "cart.checkoutStep:out-of-range")
        step = None
    raw = cart.items_raw
    page = 0
    if raw is not None:
        page = hash(raw) or 1  # 0 is "none known"
        if page == pages(cart_id):  # the cart's lines as they are: not read again
            return PageView(ev.id, ev.timestamp, cart_id, email, Snapshot(total, step, None, page))
    lines, tallied = _lines(cart.items(), name, missing, False, limits)
    # a page whose lines tallied a field is not remembered: read again, it tallies again
    snapshot = Snapshot(total, step, dict(lines), 0 if tallied else page)
    return PageView(ev.id, ev.timestamp, cart_id, email, snapshot)


def _cart_id(ev: SiteEvent, limits: Limits) -> str | None:
    """The event's cart.id, if any; too long: dead-lettered."""
    cart = ev.cart
    cart_id = None if cart is None else cart.id
    if cart_id and len(cart_id) > limits.max_id_chars:
        raise _too_long("cart.id", cart_id, limits)
    return cart_id


def _product_id(product: Product | None, limits: Limits) -> str:
    product_id = None if product is None else product.id
    if not product_id:
        raise InvalidEventError("product.id")
    if len(product_id) > limits.max_id_chars:
        raise _too_long("product.id", product_id, limits)
    return product_id


def _viewed_product(
    ev: SiteEvent, email: str | None, missing: Missing, limits: Limits, pages: Pages
) -> ProductView:
    product_id = _product_id(ev.product, limits)
    return ProductView(ev.id, ev.timestamp, _cart_id(ev, limits), email, product_id)


def _line_change(added: bool) -> Handler:
    name = "Added Product" if added else "Removed Product"

    def handler(
        ev: SiteEvent, email: str | None, missing: Missing, limits: Limits, pages: Pages
    ) -> LineChange:
        cart_id = _cart_id(ev, limits)
        if not cart_id:
            raise InvalidEventError("cart.id")
        product = ev.product
        product_id = _product_id(product, limits)
        assert product is not None  # _product_id raised otherwise
        quantity = ev.quantity
        if quantity is None:
            if added:
                _tally(missing, name, "quantity")
        elif not (0 < quantity <= limits.max_quantity):
            raise _bad_quantity("quantity", quantity, limits)
        if not added:  # takes units off the line: its name and price are not used
            return LineChange(
                ev.id, ev.timestamp, cart_id, email, product_id, False, quantity, None, None
            )
        product_name = product.name
        if product_name is None:
            _tally(missing, name, "product.name")
        elif len(product_name) > limits.max_text_chars:
            _tally(missing, name, "product.name:too-long")
            product_name = None
        price = product.unit_sale_price
        if price is None:
            _tally(missing, name, "product.unitSalePrice")
            price = product.unit_price
            if price is not None and not (0.0 <= price <= limits.max_price):
                raise _bad_amount("product.unitPrice", price, limits)
        elif not (0.0 <= price <= limits.max_price):
            raise _bad_amount("product.unitSalePrice", price, limits)
        return LineChange(
            ev.id,
            ev.timestamp,
            cart_id,
            email,
            product_id,
            True,
            quantity,
            product_name,
            price,
        )

    return handler


def _completed_transaction(
    ev: SiteEvent, email: str | None, missing: Missing, limits: Limits, pages: Pages
) -> Purchase:
    name = "Completed Transaction"
    tx = ev.transaction
    order_id = None if tx is None else tx.order_id
    if tx is None or not order_id:
        raise InvalidEventError("transaction.orderId")
    if len(order_id) > limits.max_id_chars:
        raise _too_long("transaction.orderId", order_id, limits)
    cart_id = tx.cart_id
    if cart_id is None:
        _tally(missing, name, "transaction.cartId")
    if not cart_id:
        cart_id = _cart_id(ev, limits)
    elif len(cart_id) > limits.max_id_chars:
        raise _too_long("transaction.cartId", cart_id, limits)
    max_price = limits.max_price
    for field, value in (("total", tx.total), ("tax", tx.tax), ("shippingCost", tx.shipping_cost)):
        if value is None:
            _tally(missing, name, f"transaction.{field}")
        elif not (0.0 <= value <= max_price):
            raise _bad_amount(f"transaction.{field}", value, limits)
    affiliation = tx.affiliation
    if affiliation is None:
        _tally(missing, name, "transaction.affiliation")
    elif len(affiliation) > limits.max_text_chars:
        _tally(missing, name, "transaction.affiliation:too-long")
        affiliation = None
    return Purchase(
        ev.id,
        ev.timestamp,
        cart_id,
        email,
        order_id,
        affiliation,
        tx.total,
        tx.tax,
        tx.shipping_cost,
        _lines(tx.line_items, name, missing, True, limits)[0],
    )


HANDLERS: dict[str, Handler] = {
    "Viewed Page": _viewed_page,
    "Viewed Product Detail": _viewed_product,
    "Added Product": _line_change(added=True),
    "Removed Product": _line_change(added=False),
    "Completed Transaction": _completed_transaction,
}
EVENT_NAMES = tuple(HANDLERS)


def normalise(
    event: SiteEvent | Record,
    identity: Identity,
    missing: Missing,
    limits: Limits = DEFAULT_LIMITS,
    pages: Pages = no_pages,
) -> Change | None:
    """The event's Change, or None for an event name outside the vocabulary. A record in
    fastavro's shape (a dict) is read as its `SiteEvent.of`. `pages`: the partition
    state's (see Pages)."""
    if type(event) is dict:
        event = SiteEvent.of(event)
    assert isinstance(event, SiteEvent)
    handler = HANDLERS.get(event.name)
    if handler is None:
        return None
    event_id = event.id
    if not 0 < len(event_id) <= limits.max_id_chars:
        raise _too_long("id", event_id, limits) if event_id else InvalidEventError("id")
    user = event.user
    email = identity.email(None if user is None else user.email)
    return handler(event, email, missing, limits, pages)
