"""carts: the `c<cart id>` records, compaction, load and expiry, and the net change."""

from __future__ import annotations

import orjson
import pytest

from pipeline.errors import InvalidEventError
from pipeline.journey.commands import Command
from pipeline.source.changes import Line
from pipeline.source.identity import email_hash
from pipeline.state.carts import MAX_CART_LINES, Cart, Carts, cart_email, cart_ms, net_change
from pipeline.state.records import Record

DAY = 86_400_000


def restored(records: list[Record]) -> tuple[Carts, int]:
    carts, newest = Carts(DAY), 0
    for key, value in records:
        newest = max(newest, carts.load(key[1:].decode(), value))
    return carts, newest


def test_changes_load_round_trip() -> None:
    carts = Carts(DAY)
    carts.open("c-1", 1000).add("sku-1", 2, "Kettle", 24.9)
    carts.open("c-2", 2000).add("sku-2", 1, None, None)
    log = carts.changes()
    assert sorted(key for key, _ in log) == [b"cc-1", b"cc-2"]
    value = dict(log)[b"cc-1"]
    assert value is not None
    assert value[:8] == (1000).to_bytes(8, "big")
    # never sent to Journey: the sent side is spelt out
    assert orjson.loads(value[8:]) == [
        0,
        False,
        49.8,
        None,
        [["sku-1", "Kettle", 24.9, 2]],
        [None, None, []],
        0,
    ]
    assert carts.changes() == []  # nothing touched since
    twin, newest = restored(log)
    assert newest == 2000
    assert twin.snapshot() == carts.snapshot()


def test_a_cart_in_sync_with_journey_is_written_short() -> None:
    cart = Cart()
    cart.add("sku-1", 1, "Kettle", 10.0)
    out: list[Command] = []
    net_change("c-1", cart, out)
    assert [c["call"] for c in out] == [
        "ECommerce.AddCart",
        "ECommerce.AddCartItem",
        "ECommerce.SubmitCart",
    ]
    assert orjson.loads(cart.dump()[8:])[5] == 0
    assert Cart.load(cart.dump()).dump() == cart.dump()
    net_change("c-1", cart, out)  # nothing new: no news
    assert len(out) == 3


def test_lines_journey_holds_are_never_changed_in_place() -> None:
    """After a send the cart's lines and what Journey holds are one dict; a later change
    replaces the line it touches, so the net change and the cart record see it."""
    cart = Cart()
    cart.add("sku-1", 1, "Kettle", 10.0)
    cart.add("sku-2", 3, "Mug", 2.0)
    out: list[Command] = []
    net_change("c-1", cart, out)
    held = cart.dump()  # the record while Journey holds the lines as they are
    cart.add("sku-1", 1, None, None)
    cart.remove("sku-2", 1)
    assert cart.sent_lines["sku-1"].quantity == 1  # what Journey holds is untouched
    assert cart.sent_lines["sku-2"].quantity == 3
    assert orjson.loads(cart.dump()[8:])[4] == [
        ["sku-1", "Kettle", 10.0, 2],
        ["sku-2", "Mug", 2.0, 2],
    ]
    assert orjson.loads(held[8:])[4] == [["sku-1", "Kettle", 10.0, 1], ["sku-2", "Mug", 2.0, 3]]
    del out[:]
    net_change("c-1", cart, out)
    assert [(c["call"], c["args"].get("quantity")) for c in out] == [
        ("ECommerce.UpdateCart", None),
        ("ECommerce.AddCartItem", 2),
        ("ECommerce.AddCartItem", 2),
        ("ECommerce.SubmitCart", None),
    ]
    assert Cart.load(cart.dump()).dump() == cart.dump()
    # a page view showing the same lines again is no news, and a line leaving is
    lines = {pid: Line(ln.name, ln.price, ln.quantity) for pid, ln in cart.lines.items()}
    cart.replace(None, None, lines)
    del out[:]
    net_change("c-1", cart, out)
    assert out == []
    cart.replace(None, None, {"sku-2": Line("Mug", 2.0, 2)})
    net_change("c-1", cart, out)
    assert [(c["call"], c["args"].get("idProduct")) for c in out] == [
        ("ECommerce.UpdateCart", None),
        ("ECommerce.RemoveCartItem", "sku-1"),
        ("ECommerce.SubmitCart", None),
    ]
    assert orjson.loads(cart.dump()[8:])[4:6] == [[["sku-2", "Mug", 2.0, 2]], 0]


def test_compaction_keeps_idle_carts_as_bytes_and_they_come_back() -> None:
    carts = Carts(DAY)
    carts.open("c-1", 1000).add("sku-1", 1, "Kettle", 10.0)
    carts.dirty.clear()  # flushed
    carts.changes()
    carts.compact()  # c-1 was recent: kept as an object
    assert isinstance(carts.carts["c-1"], Cart)
    carts.compact()  # idle since the last pass
    kept = carts.carts["c-1"]
    assert isinstance(kept, bytes) and cart_ms(kept) == 1000
    held = carts.held("c-1")
    assert isinstance(held, Cart) and held.lines["sku-1"].quantity == 1


def test_compaction_keeps_the_record_last_written_unless_the_cart_changed_since() -> None:
    carts = Carts(DAY)
    carts.open("c-1", 1000).add("sku-1", 1, "Kettle", 10.0)
    carts.open("c-2", 1000).add("sku-2", 1, "Mug", 2.0)
    carts.dirty.pop("c-1")  # c-1 flushed; c-2 still dirty when the records are written
    written = dict(carts.changes())
    net_change("c-2", carts.dirty.pop("c-2"), [])  # c-2 changes after its record was written
    carts.compact()
    carts.compact()
    assert carts.carts["c-1"] is written[b"cc-1"]  # kept, not encoded again
    kept = carts.carts["c-2"]
    assert isinstance(kept, bytes) and kept != written[b"cc-2"]
    assert Cart.load(kept).created and Cart.load(kept).version == 1  # the change is kept
    # a pass between a change and its record (here a new email) keeps the cart an object
    carts.changes()
    carts.changes()
    assert isinstance(carts.held("c-1"), Cart)
    carts.changes()
    carts.changes()  # c-1 idle again: compact, its parsed bytes kept
    assert carts.carts["c-1"] is written[b"cc-1"]
    carts.held("c-1")
    carts.identify("c-1", "anna@example.ru", 2000)
    carts.compact()
    carts.compact()
    assert isinstance(carts.carts["c-1"], Cart)
    assert cart_email(dict(carts.changes())[b"cc-1"] or b"") == "anna@example.ru"


def test_a_page_showing_the_cart_as_it_is_moves_only_its_time() -> None:
    carts = Carts(DAY)
    cart = carts.open("c-1", 1000)
    cart.add("sku-1", 2, "Kettle", 10.0)
    net_change("c-1", carts.dirty.pop("c-1"), [])
    [(_, first)] = carts.changes()
    held = cart.lines
    carts.open("c-1", 2000).replace(20.0, None, {"sku-1": Line("Kettle", 10.0, 2)})
    assert cart.lines is held and cart.synced  # still the lines Journey holds
    out: list[Command] = []
    net_change("c-1", carts.dirty.pop("c-1"), out)
    assert out == []
    [(_, second)] = carts.changes()  # the record before, with the new time
    assert second == cart.dump() and second[8:] == first[8:] and cart_ms(second) == 2000
    for total, step, quantity in ((20.0, 2, 2), (30.0, None, 3), (20.01, None, 2)):
        carts.open("c-1", 3000).replace(total, step, {"sku-1": Line("Kettle", 10.0, quantity)})
        assert not cart.synced and cart.record is None  # another step, line or total
        net_change("c-1", carts.dirty.pop("c-1"), out)
        [(_, record)] = carts.changes()
        assert record == cart.dump() and record[8:] != second[8:]


def test_expire_tombstones_a_cart_and_its_email_with_it() -> None:
    carts = Carts(DAY)
    carts.open("c-1", 0)
    carts.identify("c-1", "a@x.com", 0)
    carts.open("c-2", DAY)
    log = carts.changes()
    carts.open("c-1", 0)  # touched again, then expired: no record, only the tombstone
    gone = carts.expire(DAY + 1)
    assert gone == [(b"cc-1", None)]  # one record: the email was in the cart's
    assert carts.changes() == []  # c-1 is not written back after its tombstone
    assert carts.email("c-1") is None and carts.named(email_hash("a@x.com")) == set()
    twin, _ = restored(log + gone)
    assert twin.snapshot() == carts.snapshot()
    assert list(carts.carts) == ["c-2"]


def test_a_cart_with_max_lines_takes_no_new_line() -> None:
    carts = Carts(DAY)
    cart = carts.open("c-1", 0)
    for i in range(MAX_CART_LINES):
        cart.add(f"sku-{i}", 1, None, None)
    carts.check_room("c-1", "sku-0")  # an existing line: fine
    with pytest.raises(InvalidEventError):
        carts.check_room("c-1", "sku-new")


def test_a_cart_parsed_to_be_read_is_compacted_again_by_later_passes() -> None:
    carts = Carts(DAY)
    for n in range(100):
        carts.open(f"c-{n}", 1000).add("sku-1", 1, "Kettle", 10.0)
    carts.dirty.clear()
    carts.changes()
    carts.compact()
    carts.compact()
    assert all(isinstance(cart, bytes) for cart in carts.carts.values())
    assert isinstance(carts.held("c-7"), Cart)  # read (a trigger), not changed
    carts.compact()
    carts.compact()
    assert all(isinstance(cart, bytes) for cart in carts.carts.values())


def test_a_quiet_partition_compacts_its_carts_two_windows_later() -> None:
    carts = Carts(DAY)
    for n in range(10):
        carts.open(f"c-{n}", 1000).add("sku-1", 1, "Kettle", 10.0)
    carts.dirty.clear()
    carts.changes()  # the window that used them
    assert all(isinstance(cart, Cart) for cart in carts.carts.values())
    carts.changes()  # nothing touched: a pass (they were used in this interval)
    carts.changes()  # and the next: idle since the last pass
    assert all(isinstance(cart, bytes) for cart in carts.carts.values())
    assert carts.changes() == []  # nothing left to compact, nothing written


def test_a_carts_email_rides_in_its_record_and_is_read_without_parsing() -> None:
    carts = Carts(DAY)
    carts.open("c-1", 1000).add("sku-1", 1, "Kettle", 10.0)
    carts.identify("c-1", "zoë@exämple.com", 1000)  # non-ASCII: its UTF-8 length is kept
    carts.identify("c-2", "b@x.com", 2000)  # no cart yet: an empty one holds the email
    log = carts.changes()
    assert sorted(key for key, _ in log) == [b"cc-1", b"cc-2"]
    value = dict(log)[b"cc-1"]
    assert value is not None and cart_email(value) == "zoë@exämple.com"
    assert Cart.load(value).email == "zoë@exämple.com" and Cart.load(value).dump() == value
    twin, newest = restored(log)
    assert newest == 2000 and twin.snapshot() == carts.snapshot()
    assert twin.email("c-1") == "zoë@exämple.com" and twin.email("c-2") == "b@x.com"
    assert twin.named(email_hash("b@x.com")) == {"c-2"}
    twin.identify("c-1", "new@x.com", 3000)  # a compact cart stays compact
    held = twin.carts["c-1"]
    assert type(held) is bytes and cart_email(held) == "new@x.com" and cart_ms(held) == 1000


def test_a_record_written_before_carts_carried_an_email_reads_as_none() -> None:
    cart = Cart()
    cart.add("sku-1", 2, "Kettle", 10.0)
    old = (5).to_bytes(8, "big") + orjson.dumps(
        [0, False, 20.0, None, [["sku-1", "Kettle", 10.0, 2]], 0, 0]
    )
    assert cart_email(old) is None and Cart.load(old).email is None
    assert Cart.load(old).lines["sku-1"].quantity == 2
