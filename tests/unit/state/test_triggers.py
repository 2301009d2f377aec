"""Abandoned-cart and browse-abandonment triggers, on partition state with a set clock.

Trigger ids are `<cart>@abandoned@<last activity ms>.<digest>` and
`<visitor>@browse@<last view ms>.<digest>`, the digest being 8 hex digits of blake2b
over the orjson of the trigger's args (in the order sent): restated in `digest`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from pipeline.source.identity import Identity
from pipeline.source.normalise import normalise
from pipeline.state.carts import Carts
from pipeline.state.partition import PartitionState
from pipeline.state.triggers import (
    BROWSE,
    CART,
    MAX_VIEWED,
    TIMER_RESOLUTION_MS,
    Timers,
    Triggers,
    TriggerSettings,
    trigger_record,
)

T0 = 1_764_000_000_000
MIN = 60_000
SETTINGS = TriggerSettings(cart_after_ms=30 * MIN, grace_ms=60 * MIN, browse_after_ms=60 * MIN)
KETTLE = {"id": "sku-7", "name": "Kettle", "unitSalePrice": 2490.0}


def digest(args: dict[str, Any]) -> str:
    return hashlib.blake2b(orjson.dumps(args), digest_size=4).hexdigest()


class Shop:
    def __init__(self) -> None:
        self.state = PartitionState(triggers=SETTINGS)
        self.identity = Identity()
        self.n = 0

    def event(
        self,
        name: str,
        at_min: float,
        cart: str | None = "c-1",
        email: str | None = None,
        **fields: Any,
    ) -> None:
        self.n += 1
        event: dict[str, Any] = {
            "id": f"e{self.n}",
            "name": name,
            "timestamp": T0 + int(at_min * MIN),
            **fields,
        }
        if cart:
            event["cart"] = {"id": cart, **event.get("cart", {})}
        if email:
            event["user"] = {"email": email}
        change = normalise(event, self.identity, {})
        assert change is not None
        self.state.apply(change)

    def triggers(self, at_min: float) -> list[dict[str, Any]]:
        fired = self.state.fire_due(T0 + int(at_min * MIN))
        self.state.flush()
        return fired


def test_a_quiet_cart_with_lines_and_email_fires_once() -> None:
    shop = Shop()
    shop.event("Added Product", 0, email="anna@example.ru", product=KETTLE, quantity=2)
    assert shop.triggers(29) == []
    [fired] = shop.triggers(30)
    args = {
        "name": "AbandonedCart",
        "idCart": "c-1",
        "TotalPrice": 4980.0,
        "email": "anna@example.ru",
        "items": [
            {"idProduct": "sku-7", "quantity": 2, "productName": "Kettle", "priceunit": 2490.0}
        ],
        "lastActivity": T0,
    }
    assert fired == {
        "id": f"c-1@abandoned@{T0}.{digest(args)}",
        "ts": T0 + 30 * MIN,
        "cartId": "c-1",
        "email": "anna@example.ru",
        "call": "Trigger",
        "args": args,
    }
    assert list(fired["args"]) == list(args)  # the order the digest was taken in
    assert shop.triggers(300) == []  # once per quiet period
    record = trigger_record(fired, T0 + 31 * MIN)
    assert (record["name"], record["totalPrice"], record["items"][0]["quantity"]) == (
        "AbandonedCart",
        4980.0,
        2,
    )


def test_activity_rearms_and_a_new_quiet_period_fires_again() -> None:
    shop = Shop()
    shop.event("Added Product", 0, email="a@b.ru", product=KETTLE)
    shop.event("Added Product", 20, product=KETTLE)  # activity before the threshold
    assert shop.triggers(30) == []
    [first] = shop.triggers(50)
    assert first["args"]["lastActivity"] == T0 + 20 * MIN
    shop.event("Removed Product", 60, product=KETTLE, quantity=1)
    [second] = shop.triggers(90)
    assert second["args"]["items"][0]["quantity"] == 1
    assert first["id"] != second["id"]
    for fired in (first, second):
        activity = fired["args"]["lastActivity"]
        assert fired["id"] == f"c-1@abandoned@{activity}.{digest(fired['args'])}"


def test_the_same_quiet_moment_with_another_content_gets_another_id() -> None:
    """The id's digest covers what the trigger says: the same cart, quiet since the same
    moment, with an email known later, is another id (not the first id again)."""
    ids: list[str] = []
    for email in ("a@b.ru", "b@b.ru"):
        shop = Shop()
        shop.event("Added Product", 0, email=email, product=KETTLE)
        [fired] = shop.triggers(30)
        ids.append(fired["id"])
    assert ids[0].split(".")[0] == ids[1].split(".")[0] == f"c-1@abandoned@{T0}"
    assert ids[0] != ids[1]


def test_a_transaction_cancels_and_an_empty_cart_never_fires() -> None:
    shop = Shop()
    shop.event("Added Product", 0, email="a@b.ru", product=KETTLE)
    shop.event("Completed Transaction", 10, transaction={"orderId": "o-1", "cartId": "c-1"})
    shop.event("Viewed Page", 0, cart="c-2", email="b@b.ru")  # an empty cart
    shop.event("Added Product", 1, cart="c-3", email="c@b.ru", product=KETTLE)
    shop.event("Removed Product", 2, cart="c-3", product=KETTLE)
    assert shop.triggers(500) == []


def test_a_cart_without_email_fires_when_the_email_comes_within_the_grace_period() -> None:
    shop = Shop()
    shop.event("Added Product", 0, product=KETTLE)
    assert shop.triggers(40) == []  # quiet, but no email yet
    shop.event("Viewed Product Detail", 50, email="late@b.ru", product=KETTLE)  # not cart activity
    [fired] = shop.triggers(51)
    assert (fired["email"], fired["args"]["lastActivity"]) == ("late@b.ru", T0)


def test_an_email_after_the_grace_period_fires_nothing() -> None:
    shop = Shop()
    shop.event("Added Product", 0, product=KETTLE)
    assert shop.triggers(40) == []
    shop.event("Viewed Product Detail", 100, email="late@b.ru", product=KETTLE)  # 30 + 60 < 100
    assert shop.triggers(101) == []


def test_fired_triggers_survive_a_restore_and_due_ones_are_not_lost() -> None:
    shop = Shop()
    shop.event("Added Product", 0, email="a@b.ru", product=KETTLE)
    shop.event("Added Product", 0, cart="c-2", email="b@b.ru", product=KETTLE)
    shop.state.stream_ms = T0
    shop.triggers(10)
    shop.event("Added Product", 5, cart="c-2", product=KETTLE)
    [fired] = shop.triggers(30)  # c-1 fires; c-2 is due at 35
    assert fired["cartId"] == "c-1"
    log = dict(shop.state.changes())
    twin = PartitionState(triggers=SETTINGS)
    for key, value in log.items():
        twin.load(key, value)
    twin.restored()
    assert [c["cartId"] for c in twin.fire_due(T0 + 36 * MIN)] == ["c-2"]


def test_browse_abandonment_fires_once_with_the_viewed_products() -> None:
    shop = Shop()
    for minute, pid in enumerate(["p1", "p2", "p1", *[f"q{i}" for i in range(10)]]):
        shop.event("Viewed Product Detail", minute, email="v@b.ru", product={"id": pid})
    assert shop.triggers(60) == []
    [fired] = shop.triggers(72)
    last = T0 + 12 * MIN
    args = {
        "name": "BrowseAbandonment",
        "email": "v@b.ru",
        "viewedProducts": [f"q{i}" for i in range(9, -1, -1)],
        "lastActivity": last,
    }
    assert fired == {
        "id": f"c-1@browse@{last}.{digest(args)}",
        "ts": last + 60 * MIN,
        "cartId": "c-1",
        "email": "v@b.ru",
        "call": "Trigger",
        "args": args,
    }
    assert list(fired["args"]) == list(args)
    assert shop.triggers(500) == []


def test_no_browse_abandonment_for_a_visitor_who_added_to_cart() -> None:
    shop = Shop()
    shop.event("Viewed Product Detail", 0, email="v@b.ru", product={"id": "p1"})
    shop.event("Added Product", 5, product={"id": "p1", "name": "Tea", "unitSalePrice": 1.0})
    fired = shop.triggers(500)
    assert [c["args"]["name"] for c in fired] == ["AbandonedCart"]


def browsing_store() -> Triggers:
    return Triggers(SETTINGS, Carts(30 * 24 * 60 * MIN), {})


def test_timers_keep_one_entry_per_key_and_pop_in_due_order() -> None:
    timers = Timers(resolution_ms=1)
    timers.arm(BROWSE, "v-1", 20)
    timers.arm(BROWSE, "v-1", 5)  # armed already: the first due time stands
    timers.arm(BROWSE, "v-2", 10)
    timers.arm(CART, "c-1", 10)
    assert len(timers) == 3
    assert timers.take_due(9) == []
    assert timers.take_due(20) == [(CART, "c-1"), (BROWSE, "v-2"), (BROWSE, "v-1")]
    assert timers.take_due(20) == []
    assert len(timers) == 0


def test_timers_fall_due_never_early_at_most_a_resolution_late() -> None:
    timers = Timers()  # TIMER_RESOLUTION_MS
    timers.arm(CART, "c-1", 1_001)
    timers.arm(CART, "c-2", 1_999)
    timers.arm(CART, "c-3", 2_000)
    timers.arm(CART, "c-4", 2_001)
    assert timers.take_due(1_999) == []  # c-1 is due, but its bucket is 2,000
    assert timers.take_due(2_000) == [(CART, "c-1"), (CART, "c-2"), (CART, "c-3")]
    timers.arm(CART, "c-1", 2_500)  # re-armed once taken
    assert timers.take_due(2_999) == []
    assert timers.take_due(TIMER_RESOLUTION_MS * 3) == [(CART, "c-4"), (CART, "c-1")]


def test_timers_drop_removes_both_kinds() -> None:
    timers = Timers(resolution_ms=1)
    timers.arm(CART, "c-1", 5)
    timers.arm(BROWSE, "c-1", 6)
    timers.arm(CART, "c-2", 5)
    timers.drop("c-1")
    assert len(timers) == 1
    assert timers.take_due(10) == [(CART, "c-2")]


def test_browsing_changes_load_round_trip() -> None:
    store = browsing_store()
    for n in range(MAX_VIEWED + 2):
        store.viewed("v-1", f"sku-{n}", T0 + n)
    store.viewed("v-1", "sku-5", T0)  # seen again: first, the time does not go back
    store.viewed(None, "sku-1", T0)  # nobody to remind: nothing kept
    log = store.changes()
    viewed = ["sku-5", "sku-11", "sku-10", "sku-9", "sku-8", "sku-7", "sku-6", "sku-4"]
    assert log == [(b"bv-1", orjson.dumps([T0 + MAX_VIEWED + 1, [*viewed, "sku-3", "sku-2"]]))]
    assert store.changes() == []
    twin = browsing_store()
    for key, value in log:
        assert twin.load(key[1:].decode(), value) == 0
    assert twin.snapshot() == store.snapshot()


def test_browsing_leaves_when_it_fires_and_is_not_expired_by_retention() -> None:
    store = browsing_store()
    store.viewed("v-1", "sku-1", T0)
    log = store.changes()
    assert store.expire(T0 + 10**12) == []
    assert store.fire_due(T0 + SETTINGS.browse_after_ms) == []  # no email known: nothing
    tombstone = store.changes()
    assert tombstone == [(b"bv-1", None)]
    twin = browsing_store()
    for key, value in log + tombstone:
        twin.load(key[1:].decode(), value)
    assert twin.snapshot() == store.snapshot() == {}
