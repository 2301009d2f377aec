"""normalise: site event dict -> one Change, per the vocabulary table (ofsys-mapping.md)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.errors import InvalidEventError
from pipeline.normalise import (
    EVENT_NAMES,
    Identity,
    Line,
    LineChange,
    Missing,
    PageView,
    ProductView,
    Purchase,
    Snapshot,
    normalise,
)

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


def run(ev: dict[str, Any]) -> tuple[Any, Missing, Identity]:
    identity = Identity()
    missing: Missing = {}
    return normalise(ev, identity, missing), missing, identity


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
        None, None, {"sku-7": Line(None, 100.0, 1), "sku-2": Line("Kettle", 2490.0, 1)}
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
    assert change == LineChange("e-1", TS, "c-1", None, "sku-2", False, 1, "Kettle", 2490.0)
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
