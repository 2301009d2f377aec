"""orders: each transaction once; the `o<order id>` records, their load and expiry."""

from __future__ import annotations

from pipeline.state.orders import Orders
from pipeline.state.records import Record

DAY = 86_400_000


def restored(records: list[Record]) -> Orders:
    orders = Orders(DAY)
    for key, value in records:
        assert orders.load(key[1:].decode(), value) == 0  # orders do not move stream time
    return orders


def test_an_order_is_first_once() -> None:
    orders = Orders(DAY)
    assert orders.first("o-1", 1000)
    assert not orders.first("o-1", 2000)
    assert orders.orders == {"o-1": 1000}


def test_changes_load_round_trip() -> None:
    orders = Orders(DAY)
    orders.first("o-1", 1000)
    orders.first("o-2", 2000)
    log = orders.changes()
    assert log == [(b"oo-1", b"1000"), (b"oo-2", b"2000")]
    assert orders.changes() == []
    assert restored(log).snapshot() == orders.snapshot() == {"o-1": 1000, "o-2": 2000}


def test_expire_writes_tombstones_and_no_record_for_an_expired_new_order() -> None:
    orders = Orders(DAY)
    log = []
    orders.first("o-1", 0)
    log += orders.changes()
    orders.first("o-2", DAY)
    orders.first("o-3", 0)  # recorded late, already past retention
    gone = orders.expire(DAY + 1)
    assert sorted(gone, key=lambda r: r[0]) == [(b"oo-1", None), (b"oo-3", None)]
    log += gone + orders.changes()
    assert (b"oo-3", b"0") not in log
    assert restored(log).snapshot() == orders.snapshot() == {"o-2": DAY}
