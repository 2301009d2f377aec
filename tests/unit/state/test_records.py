"""records: the one changelog key format of the partition state."""

from __future__ import annotations

from pipeline.state import carts, event_ids, identities, orders, triggers
from pipeline.state.records import MARKS_KEY, key, split


def test_a_key_is_the_store_prefix_then_the_name() -> None:
    assert key(b"c", "cart-é") == b"ccart-\xc3\xa9"
    assert split(b"ccart-\xc3\xa9") == (b"c", "cart-é")


def test_each_store_has_its_own_prefix_and_none_is_the_marks_key() -> None:
    prefixes = [m.PREFIX for m in (carts, event_ids, orders, identities, triggers)]
    assert prefixes == [b"c", b"s", b"o", b"i", b"b"]
    assert MARKS_KEY not in prefixes
