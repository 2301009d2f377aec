"""identities: the email tracked per cart or visitor; `i<key>` records, load, expiry."""

from __future__ import annotations

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
    identities.learn("c-1", "a@x.com", "c-1", 1000)  # a cart's: no time of its own
    identities.learn("b@x.com", "b@x.com", None, 2000)  # a cartless visitor's
    log = identities.changes()
    assert log == [(b"ic-1", b'["a@x.com",null]'), (b"ib@x.com", b'["b@x.com",2000]')]
    assert identities.changes() == []
    twin = restored(log)
    assert twin.snapshot() == identities.snapshot()
    assert twin.snapshot() == {"c-1": ["a@x.com", None], "b@x.com": ["b@x.com", 2000]}


def test_a_cartless_identity_expires_and_a_carts_only_with_its_cart() -> None:
    identities = Identities(DAY)
    identities.learn("c-1", "a@x.com", "c-1", 0)
    identities.learn("b@x.com", "b@x.com", None, 0)
    log = identities.changes()
    gone = identities.expire(2 * DAY)
    assert gone == [(b"ib@x.com", None)]
    assert identities.emails == {"c-1": "a@x.com"}
    gone += identities.forget("c-1")  # its cart expired
    assert gone[-1] == (b"ic-1", None)
    assert identities.forget("c-1") == []
    assert restored(log + gone).snapshot() == identities.snapshot() == {}
