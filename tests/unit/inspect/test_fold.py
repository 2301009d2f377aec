"""`Fold`: the service's per-record code with one window per event, on fake records.

Each event's commands are those `PartitionState` makes when its window closes right
after it; records the pipeline would re-key or dead-letter make nothing here; triggers
fall due on the partition's clock (the records' Kafka timestamps) as steps of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline import config
from pipeline.inspect.fold import Fold
from pipeline.runtime.changelog import retention, trigger_settings
from pipeline.source.partitioner import PARTITIONERS
from pipeline.source.schemas import load_family
from pipeline.state.partition import PartitionState
from pipeline.testing.kafka import FakeMessage

T0 = 1_764_000_000_000
MIN = 60_000
KETTLE = {"id": "sku-7", "name": "Kettle", "unitSalePrice": 2490.0}
FAMILY = load_family("site_event")
SETTINGS = config.load(
    {},
    {
        "topic": "site",
        "journey_url": "http://journey.invalid/",
        "account_key": "0" * 32,
        "abandoned_cart_after_s": "1800",
    },
)


@dataclass
class Record(FakeMessage):
    """A fake record with its Kafka timestamp."""

    _ts: int = 0

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)


def record(offset: int, ev: dict[str, Any], key: str | None = None, at: int = 0) -> Record:
    cart = ev["cart"]["id"]
    value = FAMILY.encode_single_object(ev)
    return Record("site", 0, offset, (key or cart).encode(), value, None, at or ev["timestamp"])


def event(n: int, name: str, cart: str = "c-1", **fields: Any) -> dict[str, Any]:
    return {"id": f"e{n}", "name": name, "timestamp": T0 + n * MIN, "cart": {"id": cart}, **fields}


def fold() -> Fold:
    state = PartitionState(retention(SETTINGS), trigger_settings(SETTINGS))
    return Fold(SETTINGS, {0: state}, 4)


def on_partition_0(prefix: str) -> str:
    """A cart id the producers' partitioner puts on partition 0 of 4."""
    return next(
        f"{prefix}{i}"
        for i in range(100)
        if PARTITIONERS["murmur2"](f"{prefix}{i}".encode(), 4) == 0
    )


def test_each_event_gets_the_commands_of_its_own_window() -> None:
    cart = on_partition_0("c-")
    steps = list(
        fold().run(
            0,
            [
                record(0, event(1, "Viewed Page", cart, user={"email": "a@b.org"})),
                record(1, event(2, "Added Product", cart, product=KETTLE, quantity=1)),
                record(2, event(2, "Added Product", cart, product=KETTLE, quantity=1)),
            ],
            T0 + 3 * MIN,
        )
    )
    assert [s.outcome for s in steps] == ["processed", "processed", "duplicate"]
    assert [c["call"] for c in steps[0].commands] == ["Track"]
    assert steps[0].commands[0]["id"] == "e1/0"
    calls = [c["call"] for c in steps[1].commands]
    assert calls == ["ECommerce.AddCart", "ECommerce.AddCartItem", "ECommerce.SubmitCart"]
    assert all(c["id"].startswith(f"{cart}@1.") for c in steps[1].commands)
    assert steps[2].commands == []


def test_records_the_pipeline_would_not_apply_here_make_nothing() -> None:
    moved = next(f"c-{i}" for i in range(100) if PARTITIONERS["murmur2"](f"c-{i}".encode(), 4) != 0)
    f = fold()
    rekeyed = f.step(record(0, event(1, "Added Product", moved, product=KETTLE), key="user-7"))
    assert rekeyed.outcome == "repartitioned" and rekeyed.commands == []
    assert rekeyed.cart_id == moved
    broken = Record("site", 0, 1, b"c-9", b"\x00junk", None, T0)
    dead = f.step(broken)
    assert dead.outcome == "dead_lettered" and dead.detail and dead.cart_id == "c-9"
    old = f.step(record(2, {**event(1, "Viewed Page"), "timestamp": 1_000}))
    assert old.outcome == "dead_lettered" and "2000-01-01" in (old.detail or "")


def test_triggers_fall_due_on_the_record_clock_as_steps_of_their_own() -> None:
    cart = on_partition_0("c-")
    other = on_partition_0("d-")
    added = event(1, "Added Product", cart, product=KETTLE, user={"email": "a@b.org"})
    later = event(50, "Viewed Page", other)
    steps = list(fold().run(0, [record(0, added), record(1, later)], T0 + 60 * MIN))
    assert [s.outcome for s in steps] == ["processed", "timers", "processed"]
    timers = steps[1]
    assert timers.msg is None
    assert [(c["call"], c["args"]["name"]) for c in timers.commands] == [
        ("Trigger", "AbandonedCart")
    ]
    assert timers.commands[0]["id"].startswith(f"{cart}@abandoned@{T0 + MIN}.")


def test_the_range_end_moves_the_clock_too() -> None:
    cart = on_partition_0("c-")
    added = event(1, "Added Product", cart, product=KETTLE, user={"email": "a@b.org"})
    quiet = list(fold().run(0, [record(0, added)], T0 + 10 * MIN))
    assert [s.outcome for s in quiet] == ["processed"]
    due = list(fold().run(0, [record(0, added)], T0 + 40 * MIN))
    assert [s.outcome for s in due] == ["processed", "timers"]
