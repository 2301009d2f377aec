"""The changelog form of partition state: what `changes()` writes, `load()` restores."""

from __future__ import annotations

from typing import Any

from pipeline.dedupe import PartitionState, Retention
from pipeline.normalise import Identity, normalise
from pipeline.produce import ShopTraffic

HOUR = 3_600_000


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
    return state


def test_restored_state_equals_the_original() -> None:
    state, log = PartitionState(), {}
    stream = events(3000, seed=1)
    for start in range(0, len(stream), 250):  # windows
        fold(state, stream[start : start + 250], log)
    assert state.carts and state.orders and state.identities
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
    carts, ids, orders = set(state.carts), len(state.seen), set(state.orders)
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
    assert not any(i in state.seen for e in early for i in [e["id"]])
    assert all(log[b"c" + c.encode()] is None for c in carts)  # tombstones in the changelog
    assert all(log[b"o" + o.encode()] is None for o in orders)
    assert restored(log, retention).snapshot() == state.snapshot()


def test_murmur2_matches_kafkas_test_vectors() -> None:
    from pipeline.partition import PARTITIONERS, murmur2

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
