"""The changelog form of partition state: what `changes()` writes, `load()` restores."""

from __future__ import annotations

import random
import uuid
from array import array
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from pipeline.source.changes import Line, PageView
from pipeline.source.identity import Identity
from pipeline.source.normalise import normalise
from pipeline.state.carts import cart_email, cart_ms
from pipeline.state.event_ids import id_hash
from pipeline.state.partition import MARKS_KEY, RECORD_BUDGET, Cart, PartitionState, Retention
from pipeline.tools.traffic import ShopTraffic

HOUR = 3_600_000
T0 = 1_764_000_000_000


def events(count: int, seed: int, step_ms: int = 1000) -> list[dict[str, Any]]:
    clock = iter(range(1_764_000_000_000, 1_764_000_000_000 + count * 10 * step_ms, step_ms))
    traffic = iter(
        ShopTraffic(seed=seed, visitors=50, duplicate_rate=0.05, clock=lambda: next(clock))
    )
    out: list[dict[str, Any]] = []
    while len(out) < count:
        _, event, _ = next(traffic)
        if event is not None:
            out.append(event)
    return out


def fold(
    state: PartitionState, batch: list[dict[str, Any]], log: dict[bytes, bytes | None]
) -> None:
    identity = Identity()
    for event in batch:
        change = normalise(event, identity, {})
        if change is not None:
            state.apply(change)
    state.flush()
    for key, value in state.changes():
        log[key] = value  # what compaction keeps: the last record of each key


def restored(log: dict[bytes, bytes | None], retention: Retention) -> PartitionState:
    state = PartitionState(retention)
    for key, value in log.items():
        state.load(key, value)
    state.restored()
    return state


def test_restored_state_equals_the_original() -> None:
    state, log = PartitionState(), {}
    stream = events(3000, seed=1)
    for start in range(0, len(stream), 250):  # windows
        fold(state, stream[start : start + 250], log)
    assert state.carts and state.orders
    assert any(cart_email(cart) for cart in state.carts.values())
    assert restored(log, state.retention).snapshot() == state.snapshot()


def test_restored_state_makes_the_same_commands_as_the_original() -> None:
    state, log = PartitionState(), {}
    stream = events(2000, seed=2)
    fold(state, stream[:1500], log)
    twin = restored(log, state.retention)
    rest = stream[1500:]
    outputs = []
    for candidate in (state, twin):
        identity = Identity()
        for event in rest:
            change = normalise(event, identity, {})
            if change is not None:
                candidate.apply(change)
        outputs.append(candidate.flush())
    assert outputs[0] == outputs[1]
    assert outputs[0]


def test_replayed_window_after_restore_makes_nothing() -> None:
    state, log = PartitionState(), {}
    stream = events(600, seed=3)
    fold(state, stream, log)
    twin = restored(log, state.retention)
    identity = Identity()
    for event in stream:
        change = normalise(event, identity, {})
        assert change is None or twin.apply(change) is False
    assert twin.flush() == []


def test_expiry_forgets_by_stream_time_and_writes_tombstones() -> None:
    retention = Retention(carts_ms=2 * HOUR, event_ids_ms=HOUR, orders_ms=3 * HOUR)
    state, log = PartitionState(retention), {}
    early = events(500, seed=4, step_ms=1000)  # about 1.4 h of traffic
    fold(state, early, log)
    carts, ids, orders = set(state.carts), len(state.event_ids), set(state.orders)
    assert carts and ids and orders
    late = events(2000, seed=5, step_ms=60_000)  # then time runs on by many hours
    offset = early[-1]["timestamp"] + 5 * HOUR - late[0]["timestamp"]
    for event in late:
        event["timestamp"] += offset
        event["id"] = "late-" + event["id"]
        if event.get("cart"):
            event["cart"]["id"] = "late-" + event["cart"]["id"]
        if event.get("transaction"):
            event["transaction"]["orderId"] = "late-" + event["transaction"]["orderId"]
            event["transaction"]["cartId"] = "late-" + event["transaction"]["cartId"]
    fold(state, late, log)
    assert not carts & set(state.carts), "idle carts outlived their retention"
    assert not orders & set(state.orders), "order ids outlived their retention"
    assert not any(e["id"] in state.event_ids for e in early)
    assert all(log[b"c" + c.encode()] is None for c in carts)  # tombstones in the changelog
    assert all(log[b"o" + o.encode()] is None for o in orders)
    assert restored(log, retention).snapshot() == state.snapshot()


def _uuids(count: int) -> list[str]:
    rng = random.Random(7)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def _escaped(count: int) -> list[str]:
    """Ids whose JSON is several times their length: control characters (6 bytes each
    escaped), quotes, backslashes and multi-byte UTF-8."""
    return [f"{n:06d}" + "\x01" * 30 + '"\\é€😀' for n in range(count)]


@pytest.mark.parametrize(
    ("make_ids", "count"), [(_uuids, 100_000), (_escaped, 40_000)], ids=["uuids", "escaped"]
)
def test_a_large_window_of_event_ids_is_written_in_records_under_the_budget(
    make_ids: Callable[[int], list[str]], count: int
) -> None:
    ids = make_ids(count)
    state = PartitionState()
    for n, event_id in enumerate(ids):
        assert state.apply(PageView(event_id, T0 + n, None, None, None)) is True
    assert state.flush() == []
    records = state.changes()
    chunks = [(key, value) for key, value in records if key[:1] == b"s"]
    assert len(chunks) == len(records) > 1, [key for key, _ in records]
    assert len({key for key, _ in chunks}) == len(chunks)
    written: list[int] = []
    for key, value in chunks:
        assert value is not None
        assert len(value) <= RECORD_BUDGET, (key, len(value))
        written.extend(array("q", value[9:]))
    assert written == [id_hash(i) for i in ids]  # every id once, in order, across the chunks
    twin = PartitionState()
    for key, value in chunks:
        twin.load(key, value)
    assert (
        twin.event_ids.snapshot() == state.event_ids.snapshot() == sorted({id_hash(i) for i in ids})
    )
    assert twin.snapshot() == state.snapshot()
    assert all(twin.apply(PageView(i, T0, None, None, None)) is False for i in ids[::997])
    # the next window after the restore does not overwrite a chunk
    twin.apply(PageView("next", T0 + count, None, None, None))
    [(key, _)] = twin.changes()
    assert key not in {k for k, _ in chunks}


def test_marks_load_from_their_key_and_a_tombstone_clears_them() -> None:
    state, log = PartitionState(), dict[bytes, bytes | None]()
    fold(state, events(300, seed=6), log)
    marks = [[120, 7], [340, 9]]  # [input offset, repartition offset] per sealed window
    log[MARKS_KEY] = orjson.dumps(marks)
    twin = restored(log, state.retention)
    assert twin.marks == marks
    assert twin.snapshot() == state.snapshot()  # the marks record is nothing else
    twin.load(MARKS_KEY, orjson.dumps([[400, 12]]))  # the last record wins
    assert twin.marks == [[400, 12]]
    twin.load(MARKS_KEY, None)
    assert twin.marks == []
    assert twin.snapshot() == state.snapshot()
    assert PartitionState().marks == []


def test_a_cart_record_from_before_prices_were_tracked_resends_its_lines() -> None:
    """Old records hold what Journey was sent as bare quantities: the line's price and
    name are unknown, so the next change of the cart sends the line again."""
    lines = [["p1", "Kettle", 2490.0, 2], ["p2", "Mug", 390.0, 1]]
    sent = [4980.0, 1, [["p1", 2]]]  # p2 and the new total not sent yet
    value = T0.to_bytes(8, "big") + orjson.dumps([1, True, 5370.0, 1, lines, sent, 0])
    assert Cart.load(value).sent_lines == {"p1": Line(None, None, 2)}
    state = PartitionState()
    state.load(b"cc-1", value)
    event = {
        "id": "e-1",
        "name": "Added Product",
        "timestamp": T0 + 1000,
        "cart": {"id": "c-1"},
        "product": {"id": "p3", "name": "Cup", "unitSalePrice": 100.0},
        "quantity": 1,
    }
    change = normalise(event, Identity(), {})
    assert change is not None
    state.apply(change)
    out = state.flush()
    assert [(c["call"], c["args"]) for c in out] == [
        ("ECommerce.UpdateCart", {"idCart": "c-1", "TotalPrice": 5470.0, "status": 1}),
        *[
            (
                "ECommerce.AddCartItem",
                {"idCart": "c-1", "idProduct": p, "quantity": q, "productName": n, "priceunit": pr},
            )
            for p, n, pr, q in [*lines, ["p3", "Cup", 100.0, 1]]
        ],
        ("ECommerce.SubmitCart", {"idCart": "c-1"}),
    ]
    assert out[0]["id"].startswith("c-1@2.")
    assert state.flush() == []


def test_murmur2_matches_kafkas_test_vectors() -> None:
    from pipeline.source.partitioner import PARTITIONERS, murmur2

    vectors = {
        "21": -973932308,
        "foobar": -790332482,
        "a-little-bit-long-string": -985981536,
        "a-little-bit-longer-string": -1486304829,
        "abc": 479470107,
        "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    }
    assert {k: murmur2(k.encode()) for k in vectors} == vectors
    assert PARTITIONERS["murmur2"](b"21", 6) == (-973932308 & 0x7FFFFFFF) % 6


def old_cart(ts: int, lines: list[list[object]]) -> bytes:
    """A cart record as written before carts carried their email."""
    total = sum(float(line[2]) * int(line[3]) for line in lines)  # type: ignore[arg-type]
    return ts.to_bytes(8, "big") + orjson.dumps([1, True, total, None, lines, 0, 0])


@pytest.mark.parametrize("identity_first", [False, True])
def test_old_cart_identities_move_into_their_carts_after_a_restore(identity_first: bool) -> None:
    cart = (b"cc-1", old_cart(1000, [["sku-1", "Kettle", 10.0, 1]]))
    identities = [(b"ic-1", b'["a@x.com",null]'), (b"ic-9", b'["z@x.com",null]')]
    records = [*identities, cart] if identity_first else [cart, *identities]
    state = PartitionState()
    for key, value in records:
        state.load(key, value)
    state.restored()
    assert cart_email(state.carts["c-1"]) == "a@x.com"
    assert cart_email(state.carts["c-9"]) == "z@x.com"  # its cart, empty, at stream time
    assert cart_ms(state.carts["c-9"]) == state.stream_ms == 1000
    log = dict(state.changes())
    assert log[b"ic-1"] is None and log[b"ic-9"] is None  # the old records, tombstoned
    assert log[b"cc-1"] is not None and cart_email(log[b"cc-1"]) == "a@x.com"
    assert restored(dict(records) | log, state.retention).snapshot() == state.snapshot()
    # Journey was told the email already: a new event of the cart makes no Track
    event = {"name": "Added Product", "id": "e-1", "timestamp": 2000, "cart": {"id": "c-1"}}
    event |= {"user": {"email": "a@x.com"}, "product": {"id": "sku-2"}, "quantity": 1}
    change = normalise(event, Identity(), {})
    assert change is not None and state.apply(change)
    sent = state.flush()
    assert [c["call"] for c in sent][:2] == ["ECommerce.UpdateCart", "ECommerce.AddCartItem"]
    assert {c["email"] for c in sent} == {"a@x.com"}
