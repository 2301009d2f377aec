"""Forgetting a shopper (GDPR erasure) in partition state: what goes, what stays, and
that a restore from the changelog (the records written, then the tombstones) holds
nothing of the shopper while another shopper on the partition is untouched."""

from __future__ import annotations

from typing import Any

from pipeline.source.identity import email_hash
from pipeline.state.partition import PartitionState
from pipeline.state.records import Record
from tests.unit.state.test_triggers import KETTLE, MIN, SETTINGS, T0, Shop

ANNA, BORIS = "anna@example.ru", "boris@example.ru"


def shop_of_two() -> tuple[Shop, list[Record]]:
    """Anna: a cart c-a with a line, then, cartless, product views as herself; Boris: a
    cart c-b with a line. Both carts' abandoned-cart timers are armed."""
    shop = Shop()
    shop.event("Added Product", 0, cart="c-a", email=ANNA, product=KETTLE, quantity=1)
    shop.event("Viewed Product Detail", 1, cart=None, email=ANNA, product={"id": "sku-9"})
    shop.event("Added Product", 0, cart="c-b", email=BORIS, product=KETTLE, quantity=3)
    shop.state.flush()
    return shop, shop.state.changes()


def restored(records: list[Record]) -> PartitionState:
    state = PartitionState(triggers=SETTINGS)
    for key, value in records:
        state.load(key, value)
    state.restored()
    return state


def mentions(snapshot: dict[str, Any], *needles: str) -> bool:
    text = repr(snapshot)
    return any(needle in text for needle in needles)


def test_forget_by_email_drops_carts_identities_browsing_and_timers() -> None:
    shop, _ = shop_of_two()
    before = shop.state.snapshot()
    assert mentions(before, ANNA, "c-a")
    tombstones = shop.state.forget(email_sha256=email_hash(ANNA))
    her = ANNA.encode()
    expected = [(b"b" + her, None), (b"cc-a", None), (b"i" + her, None)]  # her email: in c-a
    assert sorted(tombstones) == sorted(expected)
    after = shop.state.snapshot()
    assert not mentions({k: v for k, v in after.items() if k != "seen"}, ANNA, "c-a")
    assert after["carts"].keys() == {"c-b"}
    assert after["carts"]["c-b"] == before["carts"]["c-b"]
    assert after["identities"] == {}  # Boris has no cartless identity; his is in c-b
    assert after["seen"] == before["seen"]  # ids keep replays of her events out
    # her timers are gone: only Boris's cart falls due
    fired = shop.triggers(31)
    assert [c["cartId"] for c in fired] == ["c-b"]
    assert shop.triggers(24 * 60) == []  # nor her browsing, hours later


def test_a_restore_from_the_changelog_holds_nothing_of_the_forgotten_shopper() -> None:
    shop, written = shop_of_two()
    tombstones = shop.state.forget(email_sha256=email_hash(ANNA))
    state = restored(written + tombstones + shop.state.changes())
    snapshot = state.snapshot()
    assert not mentions({k: v for k, v in snapshot.items() if k != "seen"}, ANNA, "c-a")
    assert snapshot["carts"].keys() == {"c-b"}
    fired = state.fire_due(T0 + 31 * MIN)
    assert [c["cartId"] for c in fired] == ["c-b"]
    assert state.fire_due(T0 + 24 * 60 * MIN) == []


def test_forget_by_cart_drops_that_cart_only() -> None:
    shop, _ = shop_of_two()
    tombstones = shop.state.forget(cart_id="c-a")
    assert sorted(tombstones) == [(b"cc-a", None)]
    snapshot = shop.state.snapshot()
    assert snapshot["carts"].keys() == {"c-b"}
    assert snapshot["identities"].keys() == {ANNA}  # her cartless identity stays
    assert [c["cartId"] for c in shop.triggers(31)] == ["c-b"]


def test_commands_not_yet_sent_for_the_shopper_are_dropped() -> None:
    shop = Shop()
    shop.event("Added Product", 0, cart="c-a", email=ANNA, product=KETTLE)
    shop.event("Added Product", 0, cart="c-b", email=BORIS, product=KETTLE)
    shop.state.forget(email_sha256=email_hash(ANNA))
    sent = shop.state.flush()
    assert sent and all(c["cartId"] == "c-b" and c["email"] == BORIS for c in sent)


def test_forgetting_a_stranger_changes_nothing() -> None:
    shop, _ = shop_of_two()
    before = shop.state.snapshot()
    assert shop.state.forget(email_sha256=email_hash("nobody@example.ru")) == []
    assert shop.state.forget(cart_id="c-unknown") == []
    assert shop.state.snapshot() == before
