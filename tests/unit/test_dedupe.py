"""dedupe: the cart state and the net Journey commands it emits (ofsys-mapping.md,
"The pipeline's semantics"; journey-contract.md, "Calls").

Two independent models check `PartitionState`:
- `TrueShop` computes each cart's true state straight from the site events, with the
  mapping's rules, in integer cents;
- `Journey` replays the emitted command stream the way Journey would hold it, and
  checks the stream's shape (order within a flush, no nulls, unique ids, AddCart only
  for a new cart, each transaction once).
After every flush, what Journey holds must be the true cart.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.dedupe import Command, PartitionState
from pipeline.normalise import Identity, Missing, normalise

Event = dict[str, Any]
T0 = 1764000000000

# ----------------------------------------------------------------------------------------
# helpers shared by the examples


def ev(event_id: str, name: str, ts: int | None = None, **fields: Any) -> Event:
    return {"id": event_id, "name": name, "timestamp": T0 if ts is None else ts, **fields}


def prod(pid: str = "sku-7", name: str = "Kettle", price: float = 2490.0) -> dict[str, Any]:
    return {"id": pid, "name": name, "unitSalePrice": price, "unitPrice": None}


def added(event_id: str, cart: str = "c-1", quantity: int | None = None, **kw: Any) -> Event:
    email = kw.pop("email", None)
    ts = kw.pop("ts", None)
    return ev(
        event_id,
        "Added Product",
        ts,
        cart={"id": cart},
        product=prod(**kw),
        quantity=quantity,
        user={"email": email},
    )


def removed(
    event_id: str, cart: str = "c-1", quantity: int | None = None, pid: str = "sku-7"
) -> Event:
    return ev(
        event_id, "Removed Product", cart={"id": cart}, product={"id": pid}, quantity=quantity
    )


def page(
    event_id: str,
    cart: str = "c-1",
    *,
    total: float | None = None,
    step: int | None = 1,
    lines: tuple[tuple[str, int], ...] = (),
    email: str | None = None,
) -> Event:
    items = [{"product": prod(pid), "quantity": q, "subtotal": None} for pid, q in lines]
    return ev(
        event_id,
        "Viewed Page",
        user={"email": email},
        cart={"id": cart, "total": total, "checkoutStep": step, "lineItems": items},
    )


def order(
    event_id: str,
    order_id: str = "o-1",
    cart: str | None = "c-1",
    lines: tuple[tuple[str, int], ...] = (),
    **tx: Any,
) -> Event:
    items = [
        {"product": prod(pid), "quantity": q, "subtotal": tx.pop(f"sub_{pid}", None)}
        for pid, q in lines
    ]
    return ev(
        event_id,
        "Completed Transaction",
        transaction={"orderId": order_id, "cartId": cart, "lineItems": items, **tx},
    )


class Feeder:
    """A PartitionState fed raw site events through `normalise`."""

    def __init__(self) -> None:
        self.state = PartitionState()
        self.identity = Identity()
        self.missing: Missing = {}

    def apply(self, event: Event) -> bool:
        change = normalise(event, self.identity, self.missing)
        assert change is not None
        return self.state.apply(change)

    def feed(self, *events: Event) -> list[Command]:
        for event in events:
            self.apply(event)
        return self.state.flush()


def calls(commands: list[Command]) -> list[tuple[str, dict[str, Any]]]:
    return [(c["call"], c["args"]) for c in commands]


def cmd(cid: str, call: str, args: dict[str, Any], cart: str | None = "c-1", **kw: Any) -> Command:
    return {
        "id": cid,
        "ts": kw.get("ts", T0),
        "cartId": cart,
        "email": kw.get("email"),
        "call": call,
        "args": args,
    }


# ----------------------------------------------------------------------------------------
# examples


def test_added_twice_is_one_net_change_with_the_summed_quantity() -> None:
    f = Feeder()
    out = f.feed(added("e-1", quantity=2), added("e-2", ts=T0 + 5))  # no quantity: 1
    item = {"idCart": "c-1", "idProduct": "sku-7", "quantity": 3}
    item |= {"productName": "Kettle", "priceunit": 2490.0}
    assert out == [
        cmd("c-1@1/0", "ECommerce.AddCart", {"idCart": "c-1", "TotalPrice": 7470.0}, ts=T0 + 5),
        cmd("c-1@1/1", "ECommerce.AddCartItem", item, ts=T0 + 5),
        cmd("c-1@1/2", "ECommerce.SubmitCart", {"idCart": "c-1"}, ts=T0 + 5),
    ]


def test_added_with_a_given_quantity_adds_it_to_the_existing_line() -> None:
    f = Feeder()
    f.feed(page("e-1", total=4980.0, step=2, lines=(("sku-7", 2),)))
    out = f.feed(added("e-2", quantity=3))
    assert calls(out) == [
        ("ECommerce.UpdateCart", {"idCart": "c-1", "TotalPrice": 12450.0, "status": 2}),
        (
            "ECommerce.AddCartItem",
            {
                "idCart": "c-1",
                "idProduct": "sku-7",
                "quantity": 5,
                "productName": "Kettle",
                "priceunit": 2490.0,
            },
        ),
        ("ECommerce.SubmitCart", {"idCart": "c-1"}),
    ]
    assert [c["id"] for c in out] == ["c-1@2/0", "c-1@2/1", "c-1@2/2"]


def test_snapshot_is_sent_as_add_cart_with_its_lines() -> None:
    f = Feeder()
    out = f.feed(page("e-1", total=5000.0, step=3, lines=(("a", 1), ("b", 0), ("c", 2))))
    assert calls(out) == [
        ("ECommerce.AddCart", {"idCart": "c-1", "TotalPrice": 5000.0, "status": 3}),
        (
            "ECommerce.AddCartItem",
            {
                "idCart": "c-1",
                "idProduct": "a",
                "quantity": 1,
                "productName": "Kettle",
                "priceunit": 2490.0,
            },
        ),
        (
            "ECommerce.AddCartItem",
            {
                "idCart": "c-1",
                "idProduct": "c",
                "quantity": 2,
                "productName": "Kettle",
                "priceunit": 2490.0,
            },
        ),
        ("ECommerce.SubmitCart", {"idCart": "c-1"}),
    ]


def test_removing_one_of_three_keeps_the_line_with_two() -> None:
    f = Feeder()
    f.feed(page("e-1", total=3 * 2490.0, step=1, lines=(("sku-7", 3),)))
    out = f.feed(removed("e-2", quantity=1))
    assert calls(out) == [
        ("ECommerce.UpdateCart", {"idCart": "c-1", "TotalPrice": 4980.0, "status": 1}),
        (
            "ECommerce.AddCartItem",
            {
                "idCart": "c-1",
                "idProduct": "sku-7",
                "quantity": 2,
                "productName": "Kettle",
                "priceunit": 2490.0,
            },
        ),
        ("ECommerce.SubmitCart", {"idCart": "c-1"}),
    ]


def test_removed_without_quantity_removes_the_line() -> None:
    f = Feeder()
    f.feed(page("e-1", total=3 * 2490.0 + 10.0, step=1, lines=(("sku-7", 3), ("x", 1))))
    out = f.feed(removed("e-2"))
    assert calls(out) == [
        ("ECommerce.UpdateCart", {"idCart": "c-1", "TotalPrice": 10.0, "status": 1}),
        ("ECommerce.RemoveCartItem", {"idCart": "c-1", "idProduct": "sku-7"}),
        ("ECommerce.SubmitCart", {"idCart": "c-1"}),
    ]


def test_removing_more_than_the_line_holds_removes_the_line() -> None:
    f = Feeder()
    f.feed(page("e-1", total=2 * 2490.0, step=1, lines=(("sku-7", 2),)))
    out = f.feed(removed("e-2", quantity=5))
    assert calls(out) == [
        ("ECommerce.UpdateCart", {"idCart": "c-1", "TotalPrice": 0.0, "status": 1}),
        ("ECommerce.RemoveCartItem", {"idCart": "c-1", "idProduct": "sku-7"}),
        ("ECommerce.SubmitCart", {"idCart": "c-1"}),
    ]


def test_changes_that_cancel_out_in_one_window_send_nothing() -> None:
    f = Feeder()
    f.feed(page("e-1", total=2490.0, step=1, lines=(("sku-7", 1),)))
    assert f.feed(added("e-2", quantity=2), removed("e-3", quantity=2)) == []
    assert f.feed(page("e-4", total=2490.0, step=1, lines=(("sku-7", 1),))) == []
    assert f.state.flush() == []


def test_the_same_event_twice_is_applied_once() -> None:
    f = Feeder()
    first = added("e-1", quantity=2)
    assert f.apply(first) is True
    out = f.state.flush()
    assert [c["call"] for c in out] == [
        "ECommerce.AddCart",
        "ECommerce.AddCartItem",
        "ECommerce.SubmitCart",
    ]
    assert f.apply(added("e-1", quantity=2)) is False
    assert f.state.flush() == []
    # also inside one window: the replay adds nothing to the line
    assert f.apply(added("e-2", quantity=1)) is True
    assert f.apply(added("e-2", quantity=1)) is False
    assert [c["args"].get("quantity") for c in f.state.flush()] == [None, 3, None]


def test_the_same_order_in_two_events_is_one_transaction() -> None:
    f = Feeder()
    tx = {"total": 100.0, "tax": 1.0, "shippingCost": 5.0, "affiliation": "web"}
    assert f.apply(order("e-1", lines=(("sku-7", 1),), **tx)) is True
    first = f.state.flush()
    assert f.apply(order("e-2", lines=(("sku-7", 1),), **tx)) is False
    assert f.state.flush() == []
    assert first == [
        cmd(
            "e-1/0",
            "ECommerce.AddTransaction",
            {
                "idTransaction": "o-1",
                "idCart": "c-1",
                "affiliation": "web",
                "revenue": 100.0,
                "tax": 1.0,
                "shipping": 5.0,
            },
        ),
        cmd(
            "e-1/1",
            "ECommerce.AddItem",
            {
                "idTransaction": "o-1",
                "idProduct": "sku-7",
                "quantity": 1,
                "idCart": "c-1",
                "productName": "Kettle",
                "Price_unit": 2490.0,
                "Price_total": 2490.0,
            },
        ),
        cmd("e-1/2", "ECommerce.SubmitTransaction", {"idTransaction": "o-1"}),
    ]


def test_transaction_optional_args_are_left_out_and_price_total_computed() -> None:
    f = Feeder()
    out = f.feed(
        order("e-1", cart=None, lines=(("a", 3), ("b", 2)), sub_b=7.0),
        ev("e-2", "Completed Transaction", transaction={"orderId": "o-2"}),
    )
    assert calls(out) == [
        ("ECommerce.AddTransaction", {"idTransaction": "o-1"}),
        (
            "ECommerce.AddItem",
            {
                "idTransaction": "o-1",
                "idProduct": "a",
                "quantity": 3,
                "productName": "Kettle",
                "Price_unit": 2490.0,
                "Price_total": 7470.0,
            },
        ),
        (
            "ECommerce.AddItem",
            {
                "idTransaction": "o-1",
                "idProduct": "b",
                "quantity": 2,
                "productName": "Kettle",
                "Price_unit": 2490.0,
                "Price_total": 7.0,
            },
        ),
        ("ECommerce.SubmitTransaction", {"idTransaction": "o-1"}),
        ("ECommerce.AddTransaction", {"idTransaction": "o-2"}),
        ("ECommerce.SubmitTransaction", {"idTransaction": "o-2"}),
    ]
    assert [c["id"] for c in out] == ["e-1/0", "e-1/1", "e-1/2", "e-1/3", "e-2/0", "e-2/1"]
    assert [c["cartId"] for c in out] == [None] * 6


def test_track_on_first_email_not_again_for_the_same_and_again_on_change() -> None:
    f = Feeder()
    out = f.feed(page("e-1", email="Anna@Example.RU ", total=0.0))
    assert out[0] == cmd("e-1/0", "Track", {"f_EMail": "anna@example.ru"}, email="anna@example.ru")
    assert [c["call"] for c in out] == ["Track"]  # an empty, unknown cart is no news
    assert f.feed(page("e-2", email="anna@example.ru", total=0.0)) == []
    assert f.feed(page("e-3", total=0.0)) == []  # no email: not a change of email
    out = f.feed(page("e-4", email="olga@example.ru", total=0.0))
    assert out == [cmd("e-4/0", "Track", {"f_EMail": "olga@example.ru"}, email="olga@example.ru")]
    # a second cart with the same email is a new visitor to Journey: tracked again
    out = f.feed(page("e-5", cart="c-2", email="olga@example.ru", total=0.0))
    assert calls(out)[0] == ("Track", {"f_EMail": "olga@example.ru"})


def test_track_for_a_cartless_visitor_is_keyed_by_email() -> None:
    f = Feeder()
    view = {"product": prod(), "user": {"email": "a@b.ru"}}
    out = f.feed(ev("e-1", "Viewed Product Detail", **view))
    assert out == [
        cmd("e-1/0", "Track", {"f_EMail": "a@b.ru"}, cart=None, email="a@b.ru"),
        cmd("e-1/1", "ECommerce.ProductView", {"idProduct": "sku-7"}, cart=None, email="a@b.ru"),
    ]
    out = f.feed(ev("e-2", "Viewed Product Detail", **view))
    assert out == [
        cmd("e-2/0", "ECommerce.ProductView", {"idProduct": "sku-7"}, cart=None, email="a@b.ru")
    ]


def test_cart_commands_carry_the_carts_email() -> None:
    f = Feeder()
    out = f.feed(added("e-1", email="a@b.ru"), added("e-2", cart="c-2"))
    assert [(c["call"], c["cartId"], c["email"]) for c in out] == [
        ("Track", "c-1", "a@b.ru"),
        ("ECommerce.AddCart", "c-1", "a@b.ru"),
        ("ECommerce.AddCartItem", "c-1", "a@b.ru"),
        ("ECommerce.SubmitCart", "c-1", "a@b.ru"),
        ("ECommerce.AddCart", "c-2", None),
        ("ECommerce.AddCartItem", "c-2", None),
        ("ECommerce.SubmitCart", "c-2", None),
    ]


def test_transaction_sends_the_carts_pending_change_first_and_closes_it() -> None:
    f = Feeder()
    f.feed(added("e-1"))
    out = f.feed(added("e-2"), order("e-3"))
    assert [(c["id"], c["call"]) for c in out] == [
        ("c-1@2/0", "ECommerce.UpdateCart"),
        ("c-1@2/1", "ECommerce.AddCartItem"),
        ("c-1@2/2", "ECommerce.SubmitCart"),
        ("e-3/0", "ECommerce.AddTransaction"),
        ("e-3/1", "ECommerce.SubmitTransaction"),
    ]
    closed = f.state.carts["c-1"]
    assert (closed.lines, closed.created, closed.sent_lines) == ({}, False, {})
    # the next change of that cart id is a new cart, with new command ids
    out = f.feed(added("e-4", quantity=4))
    assert out[0]["id"] == "c-1@3/0"
    assert calls(out)[0] == ("ECommerce.AddCart", {"idCart": "c-1", "TotalPrice": 9960.0})
    assert calls(out)[1][1]["quantity"] == 4


def test_transaction_cart_falls_back_to_the_events_cart_id() -> None:
    f = Feeder()
    f.feed(added("e-1", cart="c-9"))
    out = f.feed(
        ev("e-2", "Completed Transaction", cart={"id": "c-9"}, transaction={"orderId": "o-1"})
    )
    assert calls(out) == [
        ("ECommerce.AddTransaction", {"idTransaction": "o-1", "idCart": "c-9"}),
        ("ECommerce.SubmitTransaction", {"idTransaction": "o-1"}),
    ]
    assert f.state.carts["c-9"].lines == {}


def test_per_event_commands_come_before_the_window_cart_changes() -> None:
    f = Feeder()
    out = f.feed(added("e-1"), ev("e-2", "Viewed Product Detail", product=prod("p2")))
    assert [c["call"] for c in out] == [
        "ECommerce.ProductView",
        "ECommerce.AddCart",
        "ECommerce.AddCartItem",
        "ECommerce.SubmitCart",
    ]


def test_a_carts_pending_change_leaves_before_its_next_per_event_command() -> None:
    f = Feeder()
    out = f.feed(
        added("e-1"), ev("e-2", "Viewed Product Detail", cart={"id": "c-1"}, product=prod("p2"))
    )
    assert [c["call"] for c in out] == [
        "ECommerce.AddCart",
        "ECommerce.AddCartItem",
        "ECommerce.SubmitCart",
        "ECommerce.ProductView",
    ]


def test_command_ids_are_deterministic() -> None:
    events = [
        page("e-1", total=100.0, step=1, lines=(("a", 1),), email="x@y.ru"),
        added("e-2", cart="c-2", quantity=2),
        ev("e-3", "Viewed Product Detail", cart={"id": "c-1"}, product=prod("b")),
        removed("e-4", pid="a"),
        order("e-5", cart="c-2", lines=(("sku-7", 2),)),
        added("e-6"),
    ]
    outputs = []
    for _ in range(2):
        f = Feeder()
        outputs.append([f.feed(*events[:3]), f.feed(*events[3:])])
    assert outputs[0] == outputs[1]
    ids = [c["id"] for flush in outputs[0] for c in flush]
    assert ids == [
        "e-1/0",
        "c-1@1/0",  # c-1's pending change leaves before its ProductView (event order)
        "c-1@1/1",
        "c-1@1/2",
        "e-3/0",
        "c-2@1/0",
        "c-2@1/1",
        "c-2@1/2",
        "e-5/0",
        "e-5/1",
        "e-5/2",
        "c-1@2/0",
        "c-1@2/1",
        "c-1@2/2",
        "c-1@2/3",
    ]


def test_flush_with_nothing_applied_is_empty() -> None:
    f = Feeder()
    assert f.state.flush() == []
    f.feed(added("e-1"))
    assert f.state.flush() == []


# ----------------------------------------------------------------------------------------
# regressions: bugs found by the property, kept as their smallest examples


def test_reopened_cart_gets_new_command_ids() -> None:
    f = Feeder()
    first = f.feed(added("e-1"))
    second = f.feed(order("e-2"), added("e-3", quantity=2))
    ids = [c["id"] for c in first + second]
    assert ids[:3] == ["c-1@1/0", "c-1@1/1", "c-1@1/2"]
    assert len(set(ids)) == len(ids), ids


def test_removing_from_a_closed_cart_sends_nothing() -> None:
    f = Feeder()
    f.feed(added("e-1"), order("e-2"))
    assert f.feed(removed("e-3")) == []


# ----------------------------------------------------------------------------------------
# the property: replaying the commands gives the true cart


CARTS = ("c1", "c2")
PRODUCTS = {"p1": ("Tea", 125), "p2": ("Kettle", 249_000), "p3": ("Cup", 99)}  # cents
EMAILS = (None, "anna@example.ru", " Anna@Example.RU", "bob@example.ru", "not-an-email")
ORDERS = ("o1", "o2", "o3")


def _product(pid: str, sale: bool) -> dict[str, Any]:
    name, cents = PRODUCTS[pid]
    price = cents / 100
    return {"id": pid, "name": name, "unitSalePrice": price if sale else None, "unitPrice": price}


def _user(email: str | None) -> dict[str, Any] | None:
    return None if email is None else {"email": email}


pids = st.sampled_from(sorted(PRODUCTS))
carts = st.sampled_from(CARTS)
emails = st.sampled_from(EMAILS)


@st.composite
def page_events(draw: st.DrawFn) -> Event:
    cart = draw(st.one_of(carts, st.none()))
    fields: Event = {"name": "Viewed Page", "user": _user(draw(emails))}
    if cart is not None:
        lines = draw(st.dictionaries(pids, st.one_of(st.none(), st.integers(0, 4)), max_size=3))
        fields["cart"] = {
            "id": cart,
            "total": draw(st.integers(0, 1_000_000)) / 100,
            "checkoutStep": draw(st.integers(1, 3)),
            "lineItems": [
                {"product": _product(pid, draw(st.booleans())), "quantity": q, "subtotal": None}
                for pid, q in lines.items()
            ],
        }
    return fields


@st.composite
def line_events(draw: st.DrawFn, added: bool) -> Event:
    pid = draw(pids)
    quantity = draw(st.sampled_from([None, 1, 2, 3] if added else [None, 0, 1, 1, 2, 5]))
    return {
        "name": "Added Product" if added else "Removed Product",
        "user": _user(draw(emails)),
        "cart": {"id": draw(carts)},
        "product": _product(pid, draw(st.booleans())) if added else {"id": pid},
        "quantity": quantity,
    }


@st.composite
def order_events(draw: st.DrawFn) -> Event:
    lines = draw(st.dictionaries(pids, st.one_of(st.none(), st.integers(1, 3)), max_size=2))
    return {
        "name": "Completed Transaction",
        "user": _user(draw(emails)),
        "cart": {"id": draw(st.one_of(st.none(), carts))},
        "transaction": {
            "orderId": draw(st.sampled_from(ORDERS)),
            "cartId": draw(st.one_of(st.none(), carts)),
            "total": 10.0,
            "lineItems": [
                {"product": _product(pid, True), "quantity": q, "subtotal": None}
                for pid, q in lines.items()
            ],
        },
    }


@st.composite
def view_events(draw: st.DrawFn) -> Event:
    cart = draw(st.one_of(st.none(), carts))
    return {
        "name": "Viewed Product Detail",
        "user": _user(draw(emails)),
        "cart": None if cart is None else {"id": cart},
        "product": _product(draw(pids), True),
    }


event_ops = st.one_of(
    st.tuples(st.just("event"), page_events()),
    st.tuples(st.just("event"), line_events(added=True)),
    st.tuples(st.just("event"), line_events(added=True)),
    st.tuples(st.just("event"), line_events(added=False)),
    st.tuples(st.just("event"), line_events(added=False)),
    st.tuples(st.just("event"), order_events()),
    st.tuples(st.just("event"), view_events()),
    st.tuples(st.just("replay"), st.integers(0, 1000)),  # an earlier event again
)
# Flush windows of events; an empty window is a flush with nothing new.
ops = st.lists(st.lists(event_ops, max_size=10), min_size=2, max_size=8).map(
    lambda windows: [op for window in windows for op in [*window, ("flush",)]]
)


@dataclasses.dataclass
class TrueCart:
    lines: dict[str, int]
    cents: int
    step: int | None


def _email(event: Event) -> str | None:
    """The rule for e-mails, restated: trimmed, lower-cased, and an address."""
    raw = (event.get("user") or {}).get("email")
    if not raw:
        return None
    email = raw.strip().lower()
    return email if email.count("@") == 1 and "." in email.split("@")[1] else None


class TrueShop:
    """The true state, computed from the events with the mapping's rules."""

    def __init__(self) -> None:
        self.carts: dict[str, TrueCart] = {}
        self.seen: set[str] = set()
        self.orders: dict[str, tuple[str | None, list[tuple[str, int]]]] = {}
        self.identities: dict[str, str] = {}
        self.tracks: list[tuple[str, str]] = []
        self.product_views: list[str] = []

    def apply(self, event: Event) -> bool:
        """Fold an event in; whether it counts (not a replay, not a repeated order)."""
        if event["id"] in self.seen:
            return False
        self.seen.add(event["id"])
        name = event["name"]
        cart_id = (event.get("cart") or {}).get("id")
        if name == "Completed Transaction":
            cart_id = event["transaction"]["cartId"] or cart_id
        email = _email(event)
        key = cart_id or email
        if email is not None and key is not None and self.identities.get(key) != email:
            self.identities[key] = email
            self.tracks.append((key, email))
        if name == "Viewed Page" and cart_id is not None:
            cart = event["cart"]
            lines = {
                i["product"]["id"]: 1 if i["quantity"] is None else i["quantity"]
                for i in cart["lineItems"]
            }
            self.carts[cart_id] = TrueCart(
                {pid: q for pid, q in lines.items() if q > 0},
                round(cart["total"] * 100),
                cart["checkoutStep"],
            )
        elif name == "Added Product":
            pid, q = event["product"]["id"], event["quantity"] or 1
            cart = self.carts.setdefault(cart_id, TrueCart({}, 0, None))
            cart.lines[pid] = cart.lines.get(pid, 0) + q
            cart.cents += PRODUCTS[pid][1] * q
        elif name == "Removed Product":
            pid, q = event["product"]["id"], event["quantity"]
            cart = self.carts.get(cart_id)
            if cart is not None and pid in cart.lines:
                taken = cart.lines[pid] if q is None else min(q, cart.lines[pid])
                cart.lines[pid] -= taken
                if cart.lines[pid] == 0:
                    del cart.lines[pid]
                cart.cents -= PRODUCTS[pid][1] * taken
        elif name == "Completed Transaction":
            order_id = event["transaction"]["orderId"]
            if order_id in self.orders:
                return False
            items = [
                (i["product"]["id"], i["quantity"] or 1) for i in event["transaction"]["lineItems"]
            ]
            self.orders[order_id] = (cart_id, items)
            if cart_id is not None:
                self.carts.pop(cart_id, None)
        elif name == "Viewed Product Detail":
            self.product_views.append(event["product"]["id"])
        return True


@dataclasses.dataclass
class JourneyCart:
    total: float
    status: int | None
    lines: dict[str, int]


def _no_none(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, dict):
        return all(_no_none(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_none(v) for v in value)
    return True


class Journey:
    """What Journey holds after the commands, and the stream's shape checked on the way."""

    CART_ITEM_CALLS = ("ECommerce.AddCartItem", "ECommerce.RemoveCartItem")

    def __init__(self) -> None:
        self.carts: dict[str, JourneyCart] = {}
        self.transactions: dict[str, tuple[str | None, list[tuple[str, int]]]] = {}
        self.ids: set[str] = set()
        self.tracks: list[tuple[str, str]] = []
        self.product_views: list[str] = []

    def flush(self, commands: list[Command]) -> None:
        groups: dict[str, JourneyCart | None] = {}  # cart -> state before its open change
        open_tx: set[str] = set()
        for c in commands:
            self._check_shape(c)
            call, args = c["call"], c["args"]
            cart_id = args.get("idCart")
            if call in ("ECommerce.AddCart", "ECommerce.UpdateCart"):
                assert c["cartId"] == cart_id
                assert cart_id not in groups, f"{call} inside an open change of {cart_id}"
                cart = self.carts.get(cart_id)
                if call == "ECommerce.AddCart":
                    assert cart is None, f"AddCart for {cart_id}, which Journey holds"
                    groups[cart_id] = None
                    cart = self.carts[cart_id] = JourneyCart(0.0, None, {})
                else:
                    assert cart is not None, f"UpdateCart for {cart_id}, unknown to Journey"
                    groups[cart_id] = dataclasses.replace(cart, lines=dict(cart.lines))
                cart.total = args["TotalPrice"]
                cart.status = args.get("status", cart.status)
            elif call in self.CART_ITEM_CALLS:
                assert c["cartId"] == cart_id
                assert cart_id in groups, f"{call} outside a change of {cart_id}"
                lines = self.carts[cart_id].lines
                pid = args["idProduct"]
                if call == "ECommerce.AddCartItem":
                    name, cents = PRODUCTS[pid]
                    assert args["productName"] == name
                    assert args["priceunit"] == cents / 100
                    assert type(args["quantity"]) is int
                    assert args["quantity"] > 0
                    assert lines.get(pid) != args["quantity"], "AddCartItem that changes nothing"
                    lines[pid] = args["quantity"]
                else:
                    assert pid in lines, f"RemoveCartItem of {pid}, not in Journey's cart"
                    del lines[pid]
            elif call == "ECommerce.SubmitCart":
                assert cart_id in groups, f"SubmitCart without an open change of {cart_id}"
                before = groups.pop(cart_id)
                assert before != self.carts[cart_id], f"a net change of {cart_id} with no change"
            elif call == "ECommerce.AddTransaction":
                tx = args["idTransaction"]
                assert tx not in self.transactions, f"transaction {tx} sent twice"
                assert cart_id not in groups
                self.transactions[tx] = (cart_id, [])
                open_tx.add(tx)
                if cart_id is not None:
                    self.carts.pop(cart_id, None)
            elif call == "ECommerce.AddItem":
                tx = args["idTransaction"]
                assert tx in open_tx, f"AddItem outside transaction {tx}"
                self.transactions[tx][1].append((args["idProduct"], args["quantity"]))
            elif call == "ECommerce.SubmitTransaction":
                tx = args["idTransaction"]
                assert tx in open_tx, f"SubmitTransaction of {tx}, not open"
                open_tx.remove(tx)
            elif call == "Track":
                assert c["email"] == args["f_EMail"]
                self.tracks.append((c["cartId"] or args["f_EMail"], args["f_EMail"]))
            elif call == "ECommerce.ProductView":
                self.product_views.append(args["idProduct"])
            else:
                raise AssertionError(f"unexpected call {call}")
        assert not groups, f"changes without SubmitCart: {groups}"
        assert not open_tx, f"transactions without SubmitTransaction: {open_tx}"

    def _check_shape(self, c: Command) -> None:
        assert set(c) == {"id", "ts", "cartId", "email", "call", "args"}
        for key in ("id", "ts", "call", "args"):
            assert c[key] is not None, f"{key} is None in {c}"
        assert _no_none(c["args"]), f"a None in the args of {c}"
        assert type(c["ts"]) is int
        cid = c["id"]
        assert cid not in self.ids, f"command id {cid} sent twice"
        self.ids.add(cid)


def run_ops(operations: list[tuple[Any, ...]]) -> list[list[Command]]:
    """Feed the operations to a PartitionState, checking it against both models."""
    state, identity, missing = PartitionState(), Identity(), {}
    truth, journey = TrueShop(), Journey()
    events: list[Event] = []
    applied_since_flush = False
    flushes = []
    for op in operations:
        if op[0] == "flush":
            out = state.flush()
            flushes.append(out)
            if not applied_since_flush:
                assert out == [], "a flush with no change emitted commands"
            applied_since_flush = False
            journey.flush(out)
            compare(truth, journey)
            continue
        if op[0] == "replay":
            if not events:
                continue
            event = events[op[1] % len(events)]
        else:
            event = {"id": f"e{len(events)}", "timestamp": T0 + len(events), **op[1]}
            events.append(event)
        tracks = len(truth.tracks)
        expected = truth.apply(event)
        change = normalise(event, identity, missing)
        assert change is not None
        assert state.apply(change) is expected
        # a repeated order is not applied, but its event may still make an email known
        applied_since_flush = applied_since_flush or expected or len(truth.tracks) > tracks
    return flushes


def compare(truth: TrueShop, journey: Journey) -> None:
    for cart_id in CARTS:
        true, held = truth.carts.get(cart_id), journey.carts.get(cart_id)
        if true is None:
            assert held is None, f"{cart_id}: Journey holds {held}, the cart is closed/unknown"
            continue
        if held is None and not true.lines:
            continue  # an empty cart Journey never heard of is no news
        assert held is not None, f"{cart_id}: Journey lacks the cart {true}"
        assert held.lines == true.lines, cart_id
        assert held.total == round(true.cents / 100, 2), cart_id
        assert held.status == true.step, cart_id
    assert journey.transactions == truth.orders
    assert journey.tracks == truth.tracks
    assert journey.product_views == truth.product_views


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops)
def test_replayed_commands_give_the_true_cart(operations: list[tuple[Any, ...]]) -> None:
    first = run_ops(operations)
    assert run_ops(operations) == first  # deterministic, ids included


def test_property_harness_catches_a_wrong_total() -> None:
    """The models are not vacuous: a Journey holding a wrong total is caught."""
    truth, journey = TrueShop(), Journey()
    event = {
        "id": "e0",
        "timestamp": T0,
        **{
            "name": "Added Product",
            "cart": {"id": "c1"},
            "product": _product("p1", True),
            "quantity": 2,
            "user": None,
        },
    }
    truth.apply(event)
    journey.carts["c1"] = JourneyCart(2.49, None, {"p1": 2})
    with pytest.raises(AssertionError):
        compare(truth, journey)
    journey.carts["c1"].total = 2.5
    compare(truth, journey)
