"""identities: the email tracked per cartless visitor; `i<email>` records, load, expiry;
old `i<cart id>` records held for their carts until the restore ends."""

from __future__ import annotations

from pipeline.source.identity import email_hash
from pipeline.state.identities import Identities
from pipeline.state.records import Record

DAY = 86_400_000


def restored(records: list[Record]) -> Identities:
    identities = Identities(DAY)
    for key, value in records:
        identities.load(key[1:].decode(), value)
    return identities


def test_changes_load_round_trip() -> None:
    identities = Identities(DAY)
    identities.learn("b@x.com", 2000)
    log = identities.changes()
    assert log == [(b"ib@x.com", b'["b@x.com",2000]')]
    assert identities.changes() == []
    twin = restored(log)
    assert twin.snapshot() == identities.snapshot() == {"b@x.com": 2000}
    assert twin.named(email_hash("b@x.com")) == {"b@x.com"}


def test_a_visitors_identity_expires_after_the_retention() -> None:
    identities = Identities(DAY)
    identities.learn("a@x.com", DAY)
    identities.learn("b@x.com", 0)
    log = identities.changes()
    gone = identities.expire(2 * DAY)
    assert gone == [(b"ib@x.com", None)]
    assert identities.tracked == {"a@x.com": DAY}
    gone += identities.forget("a@x.com")  # erased
    assert gone[-1] == (b"ia@x.com", None)
    assert identities.forget("a@x.com") == []
    assert restored(log + gone).snapshot() == identities.snapshot() == {}


def test_an_old_cart_identity_waits_for_its_cart_and_is_tombstoned_once_moved() -> None:
    old: list[Record] = [(b"ic-1", b'["a@x.com",null]'), (b"ic-2", b'["b@x.com",null]')]
    identities = restored([*old, (b"ic-2", None)])  # c-2's expired with its cart
    assert identities.snapshot() == {} and identities.legacy == {"c-1": "a@x.com"}
    assert identities.moved() == {"c-1": "a@x.com"} and identities.legacy == {}
    assert identities.changes() == [(b"ic-1", None)]
    assert identities.changes() == []
