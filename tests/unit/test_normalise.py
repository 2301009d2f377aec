"""normalise: site event dict -> one Change, per the vocabulary table (ofsys-mapping.md)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import InvalidEventError
from pipeline.source.changes import Line, LineChange, PageView, ProductView, Purchase, Snapshot
from pipeline.source.identity import Identity, is_email
from pipeline.source.normalise import DEFAULT_LIMITS, EVENT_NAMES, Limits, Missing, normalise

TS = 1764000000000


def event(name: str, event_id: str = "e-1", **fields: Any) -> dict[str, Any]:
    return {"id": event_id, "name": name, "timestamp": TS, **fields}


def product(
    pid: str | None = "sku-7",
    name: str | None = "Kettle",
    sale: float | None = 2490.0,
    unit: float | None = 2990.0,
) -> dict[str, Any]:
    return {"id": pid, "name": name, "unitSalePrice": sale, "unitPrice": unit}


def item(quantity: int | None = 2, subtotal: float | None = 4980.0, **prod: Any) -> dict[str, Any]:
    return {"product": product(**prod), "quantity": quantity, "subtotal": subtotal}


def run(ev: dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> tuple[Any, Missing, Identity]:
    identity = Identity()
    missing: Missing = {}
    return normalise(ev, identity, missing, limits), missing, identity


USER = {"email": "anna@example.ru"}


def test_vocabulary_is_the_five_required_events() -> None:
    assert EVENT_NAMES == (
        "Viewed Page",
        "Viewed Product Detail",
        "Added Product",
        "Removed Product",
        "Completed Transaction",
    )


# --- Viewed Page -------------------------------------------------------------------------


def test_viewed_page_with_full_cart() -> None:
    ev = event(
        "Viewed Page",
        user=USER,
        cart={
            "id": "c-1",
            "total": 5370.0,
            "checkoutStep": 2,
            "lineItems": [item(), item(pid="sku-9", name="Cup", sale=195.0, quantity=2)],
        },
    )
    change, missing, identity = run(ev)
    assert change == PageView(
        "e-1",
        TS,
        "c-1",
        "anna@example.ru",
        Snapshot(
            5370.0,
            2,
            {"sku-7": Line("Kettle", 2490.0, 2), "sku-9": Line("Cup", 195.0, 2)},
            0,  # read from a dict, not from the bytes: no page to remember
        ),
    )
    assert type(change) is PageView
    assert missing == {}
    assert identity.invalid == 0


def test_viewed_page_without_cart_has_no_snapshot() -> None:
    change, missing, _ = run(event("Viewed Page", user=USER))
    assert change == PageView("e-1", TS, None, "anna@example.ru", None)
    assert missing == {("Viewed Page", "cart.id"): 1}


def test_viewed_page_tallies_every_missing_optional_field() -> None:
    ev = event(
        "Viewed Page",
        cart={
            "id": "c-1",
            "total": None,
            "checkoutStep": None,
            "lineItems": [
                item(quantity=None, name=None, sale=None, unit=100.0),
                item(pid=None),
                item(pid="sku-2", quantity=None),
            ],
        },
    )
    change, missing, _ = run(ev)
    assert missing == {
        ("Viewed Page", "user.email"): 1,
        ("Viewed Page", "cart.total"): 1,
        ("Viewed Page", "cart.checkoutStep"): 1,
        ("Viewed Page", "lineItems.quantity"): 2,
        ("Viewed Page", "lineItems.product.name"): 1,
        ("Viewed Page", "lineItems.product.unitSalePrice"): 1,
        ("Viewed Page", "lineItems.product.id"): 1,
    }
    # The line without a product id is left out; lines without quantity default to 1.
    assert change.snapshot == Snapshot(
        None, None, {"sku-7": Line(None, 100.0, 1), "sku-2": Line("Kettle", 2490.0, 1)}, 0
    )
    assert change.snapshot.lines["sku-7"].quantity == 1
    assert change.snapshot.lines["sku-2"].quantity == 1


def test_missing_tallies_accumulate_across_events() -> None:
    identity, missing = Identity(), {}
    for i in range(3):
        normalise(event("Viewed Page", f"e-{i}"), identity, missing)
    assert missing == {("Viewed Page", "user.email"): 3, ("Viewed Page", "cart.id"): 3}


def test_viewed_page_line_price_prefers_sale_price() -> None:
    ev = event(
        "Viewed Page",
        cart={
            "id": "c-1",
            "total": 1.0,
            "checkoutStep": 1,
            "lineItems": [
                item(pid="a", sale=10.0, unit=12.0),
                item(pid="b", sale=None, unit=12.0),
                item(pid="c", sale=None, unit=None),
                item(pid="d", sale=0.0, unit=12.0),
            ],
        },
    )
    change, _, _ = run(ev)
    prices = {pid: line.price for pid, line in change.snapshot.lines.items()}
    assert prices == {"a": 10.0, "b": 12.0, "c": None, "d": 0.0}


# --- Viewed Product Detail ---------------------------------------------------------------


def test_viewed_product_detail() -> None:
    change, missing, _ = run(
        event("Viewed Product Detail", user=USER, cart={"id": "c-3"}, product=product())
    )
    assert change == ProductView("e-1", TS, "c-3", "anna@example.ru", "sku-7")
    assert type(change) is ProductView
    assert missing == {}


def test_viewed_product_detail_without_cart() -> None:
    change, _, _ = run(event("Viewed Product Detail", product=product()))
    assert change == ProductView("e-1", TS, None, None, "sku-7")


@pytest.mark.parametrize("prod", [None, product(pid=None), product(pid="")])
def test_viewed_product_detail_requires_product_id(prod: Any) -> None:
    with pytest.raises(InvalidEventError) as info:
        run(event("Viewed Product Detail", product=prod))
    assert info.value.field == "product.id"
    assert info.value.reason == "missing-field"


# --- Added / Removed Product -------------------------------------------------------------


def test_added_product() -> None:
    ev = event("Added Product", user=USER, cart={"id": "c-1"}, product=product(), quantity=3)
    change, missing, _ = run(ev)
    assert change == LineChange(
        "e-1", TS, "c-1", "anna@example.ru", "sku-7", True, 3, "Kettle", 2490.0
    )
    assert missing == {}


def test_added_product_missing_optionals_are_tallied() -> None:
    ev = event(
        "Added Product", cart={"id": "c-1"}, product=product(name=None, sale=None, unit=99.0)
    )
    change, missing, _ = run(ev)
    # quantity None means "default" (1), applied by the cart state.
    assert change == LineChange("e-1", TS, "c-1", None, "sku-7", True, None, None, 99.0)
    assert missing == {
        ("Added Product", "product.name"): 1,
        ("Added Product", "product.unitSalePrice"): 1,
        ("Added Product", "quantity"): 1,
    }


def test_removed_product() -> None:
    ev = event("Removed Product", cart={"id": "c-1"}, product=product(pid="sku-2"), quantity=1)
    change, missing, _ = run(ev)
    # Removing takes units off the line: the product's name and price are not read.
    assert change == LineChange("e-1", TS, "c-1", None, "sku-2", False, 1, None, None)
    assert missing == {}


def test_removed_product_tallies_nothing_optional() -> None:
    ev = event("Removed Product", cart={"id": "c-1"}, product={"id": "sku-2"})
    change, missing, _ = run(ev)
    assert change == LineChange("e-1", TS, "c-1", None, "sku-2", False, None, None, None)
    assert missing == {}


@pytest.mark.parametrize("name", ["Added Product", "Removed Product"])
@pytest.mark.parametrize("cart", [None, {"id": None}, {"id": ""}])
def test_line_change_requires_cart_id(name: str, cart: Any) -> None:
    with pytest.raises(InvalidEventError) as info:
        run(event(name, cart=cart, product=product()))
    assert info.value.field == "cart.id"
    assert str(info.value) == "missing cart.id"


@pytest.mark.parametrize("name", ["Added Product", "Removed Product"])
@pytest.mark.parametrize("prod", [None, product(pid=None), product(pid="")])
def test_line_change_requires_product_id(name: str, prod: Any) -> None:
    with pytest.raises(InvalidEventError) as info:
        run(event(name, cart={"id": "c-1"}, product=prod))
    assert info.value.field == "product.id"


def test_line_change_without_either_reports_cart_id_first() -> None:
    with pytest.raises(InvalidEventError) as info:
        run(event("Added Product"))
    assert info.value.field == "cart.id"


# --- Completed Transaction ---------------------------------------------------------------


def test_completed_transaction() -> None:
    ev = event(
        "Completed Transaction",
        user=USER,
        cart={"id": "c-other"},
        transaction={
            "orderId": "o-1",
            "cartId": "c-1",
            "total": 5170.0,
            "tax": 10.0,
            "shippingCost": 200.0,
            "affiliation": "web",
            "lineItems": [item(), item(pid="sku-9", name="Cup", sale=None, unit=95.0, quantity=1)],
        },
    )
    change, missing, _ = run(ev)
    assert change == Purchase(
        "e-1",
        TS,
        "c-1",
        "anna@example.ru",
        "o-1",
        "web",
        5170.0,
        10.0,
        200.0,
        [("sku-7", Line("Kettle", 2490.0, 2)), ("sku-9", Line("Cup", 95.0, 1))],
    )
    assert [line.subtotal for _, line in change.lines] == [4980.0, 4980.0]
    # The second line has only unitPrice: used as the price, the sale price tallied.
    assert missing == {("Completed Transaction", "lineItems.product.unitSalePrice"): 1}


def test_completed_transaction_cart_falls_back_to_event_cart() -> None:
    ev = event("Completed Transaction", cart={"id": "c-9"}, transaction={"orderId": "o-1"})
    change, missing, _ = run(ev)
    assert change == Purchase("e-1", TS, "c-9", None, "o-1", None, None, None, None, [])
    assert missing == {
        ("Completed Transaction", "transaction.cartId"): 1,
        ("Completed Transaction", "transaction.total"): 1,
        ("Completed Transaction", "transaction.tax"): 1,
        ("Completed Transaction", "transaction.shippingCost"): 1,
        ("Completed Transaction", "transaction.affiliation"): 1,
    }


def test_completed_transaction_line_optionals_are_tallied() -> None:
    ev = event(
        "Completed Transaction",
        transaction={
            "orderId": "o-1",
            "cartId": "c-1",
            "total": 1.0,
            "tax": 0.0,
            "shippingCost": 0.0,
            "affiliation": "web",
            "lineItems": [
                item(quantity=None, subtotal=None, name=None, sale=None, unit=7.0),
                item(pid=None),
            ],
        },
    )
    change, missing, _ = run(ev)
    assert missing == {
        ("Completed Transaction", "lineItems.quantity"): 1,
        ("Completed Transaction", "lineItems.subtotal"): 1,
        ("Completed Transaction", "lineItems.product.name"): 1,
        ("Completed Transaction", "lineItems.product.unitSalePrice"): 1,
        ("Completed Transaction", "lineItems.product.id"): 1,
    }
    assert change.lines == [("sku-7", Line(None, 7.0, 1))]
    assert change.lines[0][1].subtotal is None


@pytest.mark.parametrize("tx", [None, {}, {"orderId": None}, {"orderId": ""}])
def test_completed_transaction_requires_order_id(tx: Any) -> None:
    with pytest.raises(InvalidEventError) as info:
        run(event("Completed Transaction", cart={"id": "c-1"}, transaction=tx))
    assert info.value.field == "transaction.orderId"


# --- Values that make no sense ------------------------------------------------------------


def page_with(total: float | None = 100.0, step: int | None = 1, **line: Any) -> dict[str, Any]:
    cart = {"id": "c-1", "total": total, "checkoutStep": step, "lineItems": [item(**line)]}
    return event("Viewed Page", user=USER, cart=cart)


def added_with(quantity: int | None = 1, **prod: Any) -> dict[str, Any]:
    return event("Added Product", cart={"id": "c-1"}, product=product(**prod), quantity=quantity)


def removed_with(quantity: int | None = 1, **prod: Any) -> dict[str, Any]:
    return event("Removed Product", cart={"id": "c-1"}, product=product(**prod), quantity=quantity)


def order_with(tx: dict[str, Any] | None = None, **line: Any) -> dict[str, Any]:
    transaction = {
        "orderId": "o-1",
        "cartId": "c-1",
        "total": 5170.0,
        "tax": 10.0,
        "shippingCost": 200.0,
        "affiliation": "web",
        "lineItems": [item(**line)],
        **(tx or {}),
    }
    return event("Completed Transaction", transaction=transaction)


Builder = Callable[[Any], dict[str, Any]]

# (field named in the error, event with the value in that field), every place amounts occur
AMOUNT_PLACES: list[Any] = [
    pytest.param("cart.total", lambda v: page_with(total=v), id="page-total"),
    pytest.param(
        "lineItems.product.unitSalePrice", lambda v: page_with(sale=v), id="page-line-sale"
    ),
    pytest.param(
        "lineItems.product.unitPrice", lambda v: page_with(sale=None, unit=v), id="page-line-unit"
    ),
    pytest.param("product.unitSalePrice", lambda v: added_with(sale=v), id="added-sale"),
    pytest.param("product.unitPrice", lambda v: added_with(sale=None, unit=v), id="added-unit"),
    pytest.param("transaction.total", lambda v: order_with({"total": v}), id="order-total"),
    pytest.param("transaction.tax", lambda v: order_with({"tax": v}), id="order-tax"),
    pytest.param(
        "transaction.shippingCost", lambda v: order_with({"shippingCost": v}), id="order-shipping"
    ),
    pytest.param(
        "lineItems.product.unitSalePrice", lambda v: order_with(sale=v), id="order-line-sale"
    ),
    pytest.param(
        "lineItems.product.unitPrice", lambda v: order_with(sale=None, unit=v), id="order-line-unit"
    ),
    pytest.param("lineItems.subtotal", lambda v: order_with(subtotal=v), id="order-line-subtotal"),
]
BAD_AMOUNTS = [math.nan, math.inf, -math.inf, -0.01, -2490.0, 1e9 + 1, 1e300]


@pytest.mark.parametrize("value", BAD_AMOUNTS, ids=repr)
@pytest.mark.parametrize(("field", "build"), AMOUNT_PLACES)
def test_amount_that_makes_no_sense_is_dead_lettered(
    field: str, build: Builder, value: float
) -> None:
    with pytest.raises(InvalidEventError) as info:
        run(build(value))
    assert info.value.reason == "invalid-value"
    assert info.value.field == field
    assert info.value.detail.startswith(f"{field} is {value!r}")


@pytest.mark.parametrize("value", [0.0, 0.01, 1e9])
@pytest.mark.parametrize(("field", "build"), AMOUNT_PLACES)
def test_amounts_from_zero_to_max_price_pass(field: str, build: Builder, value: float) -> None:
    change, _, _ = run(build(value))
    assert change is not None


def test_max_price_is_a_limit() -> None:
    limits = Limits(max_price=100.0)
    assert run(page_with(total=100.0, sale=1.0), limits)[0].snapshot.total == 100.0
    with pytest.raises(InvalidEventError) as info:
        run(page_with(total=100.01, sale=1.0), limits)
    assert str(info.value) == "cart.total is 100.01, not an amount in 0..100"


def test_invalid_value_detail_names_field_and_value() -> None:
    with pytest.raises(InvalidEventError) as info:
        run(page_with(total=math.nan))
    assert info.value.detail == "cart.total is nan, not an amount in 0..1000000000"
    assert str(info.value) == info.value.detail


def test_amounts_no_call_carries_are_not_checked() -> None:
    # Viewed Product Detail and Removed Product carry no price; a snapshot line no
    # subtotal; a line with a sale price never uses its unitPrice.
    nan = math.nan
    assert run(event("Viewed Product Detail", product=product(sale=nan, unit=nan)))[0]
    change = run(removed_with(sale=nan, unit=-1.0))[0]
    assert (change.name, change.price) == (None, None)
    change = run(page_with(subtotal=nan, unit=nan))[0]
    assert change.snapshot.lines["sku-7"].subtotal is None
    assert change.snapshot.lines["sku-7"].price == 2490.0
    assert run(added_with(unit=math.inf))[0].price == 2490.0


# (field named in the error, event with the quantity there)
QUANTITY_PLACES: list[Any] = [
    pytest.param("quantity", lambda q: added_with(quantity=q), id="added"),
    pytest.param("quantity", lambda q: removed_with(quantity=q), id="removed"),
    pytest.param("lineItems.quantity", lambda q: order_with(quantity=q), id="order-line"),
    pytest.param("lineItems.quantity", lambda q: page_with(quantity=q), id="page-line"),
]


BAD_QUANTITIES = [0, -1, -(2**31), 2**31 - 1, 10_001]


@pytest.mark.parametrize(
    ("field", "build", "quantity"),
    [
        pytest.param(*place.values, quantity, id=f"{place.id}-{quantity}")
        for place in QUANTITY_PLACES
        for quantity in BAD_QUANTITIES
        # a cart snapshot's line with quantity 0 is not in the cart (tested below)
        if not (place.id == "page-line" and quantity == 0)
    ],
)
def test_quantity_that_makes_no_sense_is_dead_lettered(
    field: str, build: Builder, quantity: int
) -> None:
    with pytest.raises(InvalidEventError) as info:
        run(build(quantity))
    assert info.value.reason == "invalid-value"
    assert info.value.field == field
    assert info.value.detail == f"{field} is {quantity}, not a quantity in 1..10000"


@pytest.mark.parametrize("quantity", [1, 10_000])
@pytest.mark.parametrize(("field", "build"), QUANTITY_PLACES)
def test_quantities_from_one_to_max_pass(field: str, build: Builder, quantity: int) -> None:
    assert run(build(quantity))[0] is not None


def test_snapshot_line_with_quantity_zero_is_not_in_the_cart() -> None:
    ev = page_with(quantity=0, name=None, sale=math.nan, pid="x" * 300)
    ev["cart"]["lineItems"].append(item(pid="sku-9", quantity=1))
    change, missing, _ = run(ev)
    # Left out before anything else of it is read: not tallied, not checked.
    assert list(change.snapshot.lines) == ["sku-9"]
    assert missing == {}


@pytest.mark.parametrize(("field", "build"), QUANTITY_PLACES)
def test_max_quantity_is_a_limit(field: str, build: Builder) -> None:
    limits = Limits(max_quantity=5)
    assert run(build(5), limits)[0] is not None
    with pytest.raises(InvalidEventError) as info:
        run(build(6), limits)
    assert info.value.detail == f"{field} is 6, not a quantity in 1..5"


# (field named in the error, event with the id there)
ID_PLACES: list[Any] = [
    pytest.param("id", lambda i: event("Viewed Page", i), id="event-id"),
    pytest.param("cart.id", lambda i: event("Viewed Page", cart={"id": i}), id="page-cart"),
    pytest.param(
        "cart.id",
        lambda i: event("Viewed Product Detail", cart={"id": i}, product=product()),
        id="view-cart",
    ),
    pytest.param(
        "cart.id",
        lambda i: event("Added Product", cart={"id": i}, product=product()),
        id="added-cart",
    ),
    pytest.param(
        "cart.id",
        lambda i: event("Removed Product", cart={"id": i}, product=product()),
        id="removed-cart",
    ),
    pytest.param(
        "cart.id",
        lambda i: event("Completed Transaction", cart={"id": i}, transaction={"orderId": "o"}),
        id="order-event-cart",
    ),
    pytest.param(
        "product.id",
        lambda i: event("Viewed Product Detail", product=product(pid=i)),
        id="view-product",
    ),
    pytest.param("product.id", lambda i: added_with(pid=i), id="added-product"),
    pytest.param("product.id", lambda i: removed_with(pid=i), id="removed-product"),
    pytest.param("lineItems.product.id", lambda i: page_with(pid=i), id="page-line"),
    pytest.param("lineItems.product.id", lambda i: order_with(pid=i), id="order-line"),
    pytest.param("transaction.orderId", lambda i: order_with({"orderId": i}), id="order-id"),
    pytest.param("transaction.cartId", lambda i: order_with({"cartId": i}), id="order-cart"),
]


@pytest.mark.parametrize("length", [256, 100_000])
@pytest.mark.parametrize(("field", "build"), ID_PLACES)
def test_id_longer_than_max_id_chars_is_dead_lettered(
    field: str, build: Builder, length: int
) -> None:
    with pytest.raises(InvalidEventError) as info:
        run(build("x" * length))
    assert info.value.reason == "invalid-value"
    assert info.value.field == field
    assert info.value.detail == f"{field} is {length} characters, more than 255"


@pytest.mark.parametrize(("field", "build"), ID_PLACES)
def test_ids_up_to_max_id_chars_pass(field: str, build: Builder) -> None:
    assert run(build("x" * 255))[0] is not None


def test_empty_event_id_is_missing() -> None:
    with pytest.raises(InvalidEventError) as info:
        run(event("Viewed Page", ""))
    assert (info.value.field, info.value.reason) == ("id", "missing-field")


def test_event_outside_the_vocabulary_is_not_checked() -> None:
    assert run(event("Viewed Cart", "x" * 1000, cart={"total": math.nan}))[0] is None


# (event, field tallied, event with the text there, the text as it comes out)
TEXT_PLACES: list[Any] = [
    pytest.param(
        "Added Product", "product.name", lambda t: added_with(name=t), lambda c: c.name, id="added"
    ),
    pytest.param(
        "Viewed Page",
        "lineItems.product.name",
        lambda t: page_with(name=t),
        lambda c: c.snapshot.lines["sku-7"].name,
        id="page-line",
    ),
    pytest.param(
        "Completed Transaction",
        "lineItems.product.name",
        lambda t: order_with(name=t),
        lambda c: c.lines[0][1].name,
        id="order-line",
    ),
    pytest.param(
        "Completed Transaction",
        "transaction.affiliation",
        lambda t: order_with({"affiliation": t}),
        lambda c: c.affiliation,
        id="affiliation",
    ),
]


@pytest.mark.parametrize("length", [1001, 100_000])
@pytest.mark.parametrize(("name", "field", "build", "text"), TEXT_PLACES)
def test_text_longer_than_max_text_chars_is_dropped_and_counted(
    name: str, field: str, build: Builder, text: Callable[[Any], Any], length: int
) -> None:
    change, missing, _ = run(build("n" * length))
    assert text(change) is None
    assert missing == {(name, f"{field}:too-long"): 1}


@pytest.mark.parametrize(("name", "field", "build", "text"), TEXT_PLACES)
def test_text_up_to_max_text_chars_is_kept(
    name: str, field: str, build: Builder, text: Callable[[Any], Any]
) -> None:
    change, missing, _ = run(build("n" * 1000))
    assert text(change) == "n" * 1000
    assert missing == {}


def test_removed_product_name_is_not_read() -> None:
    change, missing, _ = run(removed_with(name="n" * 100_000))
    assert change.name is None
    assert missing == {}


@pytest.mark.parametrize("step", [-1, 101, 2**31 - 1, -(2**31)])
def test_checkout_step_out_of_range_is_dropped_and_counted(step: int) -> None:
    change, missing, _ = run(page_with(step=step))
    assert change.snapshot.step is None
    assert change.snapshot.total == 100.0  # the rest of the snapshot stands
    assert missing == {("Viewed Page", "cart.checkoutStep:out-of-range"): 1}


@pytest.mark.parametrize("step", [0, 1, 100])
def test_checkout_step_in_range_is_kept(step: int) -> None:
    change, missing, _ = run(page_with(step=step))
    assert change.snapshot.step == step
    assert missing == {}


def test_invalid_event_error_carries_reason_and_detail() -> None:
    missing = InvalidEventError("product.id")
    assert (missing.field, missing.reason, missing.detail) == (
        "product.id",
        "missing-field",
        "missing product.id",
    )
    assert str(missing) == "missing product.id"
    bad = InvalidEventError("cart.total", reason="invalid-value", detail="cart.total is nan")
    assert (bad.field, bad.reason, bad.detail, str(bad)) == (
        "cart.total",
        "invalid-value",
        "cart.total is nan",
        "cart.total is nan",
    )
    assert InvalidEventError("cart.total", reason="invalid-value").detail == "invalid cart.total"


# The property: whatever decodes, nothing that makes no sense comes out of normalise.

# Mostly sensible values (a branch each of one_of is about as likely as the others), so
# that the few that make no sense get past the required fields and reach every check.
_sane_amounts = st.floats(0.0, 1e9)
_amounts = st.one_of(st.none(), _sane_amounts, _sane_amounts, _sane_amounts, st.floats())
_sane_ints = st.integers(1, 10)
_ints = st.one_of(
    st.none(),
    _sane_ints,
    _sane_ints,
    _sane_ints,
    st.integers(),
    st.sampled_from([0, 100, 101, 10_000, 10_001]),
)
_ids = st.sampled_from([*(f"p-{i}" for i in range(8)), "x" * 255, "", None, "x" * 256])
_texts = st.one_of(st.none(), st.text(max_size=5), st.sampled_from(["t" * 1000, "t" * 1001]))
_products = st.fixed_dictionaries(
    {"id": _ids, "name": _texts, "unitSalePrice": _amounts, "unitPrice": _amounts}
)
_items = st.lists(
    st.fixed_dictionaries({"product": _products, "quantity": _ints, "subtotal": _amounts}),
    max_size=3,
)
_events = st.fixed_dictionaries(
    {
        "id": st.sampled_from([*(f"e-{i}" for i in range(8)), "x" * 255, "", "x" * 256]),
        "name": st.sampled_from(EVENT_NAMES),
        "timestamp": st.just(TS),
        "user": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {"email": st.sampled_from(["a@x.ru", " A@X.RU", "a@x..ru", "a" * 300 + "@x.ru"])}
            ),
        ),
        "cart": st.fixed_dictionaries(
            {"id": _ids, "total": _amounts, "checkoutStep": _ints, "lineItems": _items}
        ),
        "product": _products,
        "quantity": _ints,
        "transaction": st.fixed_dictionaries(
            {
                "orderId": _ids,
                "cartId": _ids,
                "total": _amounts,
                "tax": _amounts,
                "shippingCost": _amounts,
                "affiliation": _texts,
                "lineItems": _items,
            }
        ),
    }
)


def _check_amount(value: float | None) -> None:
    assert value is None or (math.isfinite(value) and 0.0 <= value <= 1e9), value


def _check_id(value: str | None) -> None:
    assert value is None or len(value) <= 255


def _check_line(line: Line) -> None:
    assert 1 <= line.quantity <= 10_000
    assert line.name is None or len(line.name) <= 1000
    _check_amount(line.price)
    _check_amount(line.subtotal)


@settings(max_examples=300, deadline=None, database=None)
@given(_events)
def test_nothing_that_makes_no_sense_comes_out(ev: dict[str, Any]) -> None:
    try:
        change, _, _ = run(ev)
    except InvalidEventError as exc:
        assert exc.reason in ("missing-field", "invalid-value")
        assert len(exc.detail) < 120  # never the value itself when it is a long string
        return
    assert 0 < len(change.event_id) <= 255
    _check_id(change.cart_id)
    assert change.email is None or is_email(change.email)
    if type(change) is PageView and change.snapshot is not None:
        _check_amount(change.snapshot.total)
        assert change.snapshot.step is None or 0 <= change.snapshot.step <= 100
        for pid, line in change.snapshot.lines.items():
            _check_id(pid)
            _check_line(line)
    elif type(change) in (ProductView, LineChange):
        assert change.product_id
        _check_id(change.product_id)
    if type(change) is LineChange:
        assert change.quantity is None or 1 <= change.quantity <= 10_000
        assert change.name is None or len(change.name) <= 1000
        _check_amount(change.price)
    elif type(change) is Purchase:
        assert change.order_id
        _check_id(change.order_id)
        assert change.affiliation is None or len(change.affiliation) <= 1000
        for amount in (change.revenue, change.tax, change.shipping):
            _check_amount(amount)
        for pid, line in change.lines:
            _check_id(pid)
            _check_line(line)


# --- Other names -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Viewed Cart", "viewed page", "", "Added product"])
def test_unknown_event_names_return_none(name: str) -> None:
    change, missing, identity = run(event(name, user={"email": "not an email"}))
    assert change is None
    assert missing == {}
    assert identity.invalid == 0  # not even looked at


# --- Identity ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("anna@example.ru", "anna@example.ru"),
        ("  Anna.Petrova@Example.RU \t", "anna.petrova@example.ru"),
        ("\nBOB+shop@mail.example.com\n", "bob+shop@mail.example.com"),
    ],
)
def test_email_trimmed_and_lowercased(raw: str, expected: str) -> None:
    change, _, identity = run(event("Viewed Page", user={"email": raw}))
    assert change.email == expected
    assert identity.invalid == 0


@pytest.mark.parametrize(
    "raw", ["anna", "anna@example", "@example.ru", "an na@example.ru", "a@b@c.ru", "   "]
)
def test_invalid_email_is_counted_and_not_returned(raw: str) -> None:
    change, missing, identity = run(event("Viewed Page", user={"email": raw}))
    assert change.email is None
    assert identity.invalid == 1
    assert missing[("Viewed Page", "user.email")] == 1


@pytest.mark.parametrize("user", [None, {}, {"email": None}, {"email": ""}])
def test_absent_email_is_not_invalid(user: Any) -> None:
    change, _, identity = run(event("Viewed Page", user=user))
    assert change.email is None
    assert identity.invalid == 0


def test_invalid_count_accumulates() -> None:
    identity, missing = Identity(), {}
    for i, raw in enumerate(["x", "y@z.ru", "nope", " "]):
        normalise(
            event("Viewed Product Detail", f"e-{i}", user={"email": raw}, product=product()),
            identity,
            missing,
        )
    assert identity.invalid == 3


def test_email_is_read_for_every_event_type() -> None:
    user = {"email": " X@Y.RU"}
    events = [
        event("Viewed Page", user=user),
        event("Viewed Product Detail", user=user, product=product()),
        event("Added Product", user=user, cart={"id": "c"}, product=product()),
        event("Removed Product", user=user, cart={"id": "c"}, product=product()),
        event("Completed Transaction", user=user, transaction={"orderId": "o"}),
    ]
    assert [run(ev)[0].email for ev in events] == ["x@y.ru"] * 5


@pytest.mark.parametrize(
    "raw",
    [
        "<script>@x.ru",
        "a@b..ru",
        "\x00@x.ru",
        "a\x00b@x.ru",
        "a@x.ru\x00",
        "a" * 100_000 + "@x.ru",
        ".a@x.ru",
        "a.@x.ru",
        "a..b@x.ru",
        "a@-x.ru",
        "a@x-.ru",
        "a@x.123",
        "a@x_y.ru",
        "a@x.ru.",
        "a@.x.ru",
        "a@[127.0.0.1]",
        '"a b"@x.ru',
        "a<b>@x.ru",
        "a(b)@x.ru",
        "a,b@x.ru",
        "a@x.ru>",
        "a\u200b@x.ru",
        "a@x.r\u00b2",
        "x" * 65 + "@x.ru",
        "a@" + "x" * 64 + ".ru",
        "a@" + ("x" * 63 + ".") * 4 + "ru",  # 261 characters
    ],
    ids=lambda raw: repr(raw if len(raw) < 40 else f"{raw[:20]}...({len(raw)})"),
)
def test_not_an_address_is_dropped_and_counted(raw: str) -> None:
    change, missing, identity = run(event("Viewed Page", user={"email": raw}))
    assert change.email is None
    assert identity.invalid == 1
    assert missing[("Viewed Page", "user.email")] == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Anna.Smith+shop@Example.RU ", "anna.smith+shop@example.ru"),
        ("иван@пример.рф", "иван@пример.рф"),
        (" ИВАН@ПРИМЕР.РФ", "иван@пример.рф"),
        ("o'brien@x.co.uk", "o'brien@x.co.uk"),
        ("a!#$%&'*+-/=?^_`{|}~z@x.ru", "a!#$%&'*+-/=?^_`{|}~z@x.ru"),
        ("a@x-y.ru", "a@x-y.ru"),
        ("a@1.ru", "a@1.ru"),
        ("user@भारत.भारत", "user@भारत.भारत"),
        ("x" * 64 + "@x.ru", "x" * 64 + "@x.ru"),
        ("a@" + "x" * 63 + ".ru", "a@" + "x" * 63 + ".ru"),
    ],
)
def test_address_is_accepted(raw: str, expected: str) -> None:
    change, _, identity = run(event("Viewed Page", user={"email": raw}))
    assert change.email == expected
    assert identity.invalid == 0


def test_address_at_most_254_characters() -> None:
    domain = ("x" * 63 + ".") * 3  # three labels of the most characters a label may have
    assert len("a@" + domain + "y" * 60) == 254
    assert is_email("a@" + domain + "y" * 60)
    assert not is_email("a@" + domain + "y" * 61)


def test_huge_address_is_counted_every_time_and_not_memoised() -> None:
    identity, missing = Identity(), {}
    huge = "a" * 100_000 + "@x.ru"
    for i in range(2):
        change = normalise(event("Viewed Page", f"e-{i}", user={"email": huge}), identity, missing)
        assert change.email is None
    assert identity.invalid == 2
    assert huge not in identity._known  # a flood of huge values cannot fill the memo


def test_memo_returns_the_same_answers() -> None:
    identity, missing = Identity(), {}
    raws = [" Anna@Example.RU", "<script>@x.ru", " Anna@Example.RU", "<script>@x.ru"]
    emails = [
        normalise(event("Viewed Page", f"e-{i}", user={"email": raw}), identity, missing).email
        for i, raw in enumerate(raws)
    ]
    assert emails == ["anna@example.ru", None, "anna@example.ru", None]
    assert identity.invalid == 2
