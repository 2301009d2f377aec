"""Durable state on a real broker: restore, kill -9, and scaling by partition count."""

from __future__ import annotations

import random
import threading
import time
import zlib

from pipeline import config
from pipeline.runtime.changelog import Changelog
from pipeline.runtime.outputs import Outputs
from pipeline.runtime.wiring import build_pipeline

from .checks import shop_records
from .conftest import Harness, PipelineProcess, wait_for


def producing(
    harness: Harness, topic: str, records: list[tuple[str, bytes]], seconds: float
) -> threading.Thread:
    """Produce `records` spread over `seconds` in the background (bounded; ends itself)."""

    def run() -> None:
        chunks = 20
        size = -(-len(records) // chunks)
        for start in range(0, len(records), size):
            harness.produce(records[start : start + size], topic)
            time.sleep(seconds / chunks)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_restore_takes_the_state_back_exactly(harness: Harness) -> None:
    records = shop_records(harness.family, 3000, seed=21)
    harness.produce(records)
    settings = config.load({**harness.env(), "OFSYS_METRICS_PORT": "0"})  # in this process
    pipeline, _, _ = build_pipeline(settings)
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    wait_for(lambda: sum(pipeline.committed().values()) == len(records), 60, "all committed")
    before = pipeline.state_snapshot()
    pipeline.stop()
    runner.join(30)
    assert sum(len(s["carts"]) for s in before.values()) > 100  # type: ignore[arg-type]
    states, restored_records = Changelog(settings, Outputs(settings)).restore(
        sorted(before), lambda: False
    )
    assert restored_records > 0
    assert {p: state.snapshot() for p, state in states.items()} == before


GROUP_ENV = {"OFSYS_FLUSH_INTERVAL_MS": "300"}  # what every member of a group runs with


def report(harness: Harness, label: str) -> None:
    ledger = harness.journey.ledger()
    print(
        f"{label}: Journey kept {ledger['accepted']} commands; received "
        f"{ledger['duplicates_received']} again by id (at-least-once on the wire)"
    )


def test_kill_9_at_random_moments_loses_and_doubles_nothing(harness: Harness) -> None:
    records = shop_records(harness.family, 6000, seed=31)
    feeder = producing(harness, harness.topic, records, seconds=12)
    rng = random.Random(7)
    current = harness.start(**GROUP_ENV)
    for _ in range(5):
        time.sleep(rng.uniform(1.5, 4.0))
        current.kill()
        current = harness.start(**GROUP_ENV)
    feeder.join(60)
    harness.wait_committed(len(records), 120, "every record committed after the kills")
    report(harness, "kill -9 x5")
    harness.assert_ledger_matches(records)
    assert current.terminate() == 0


def assigned(members: list[PipelineProcess]) -> float:
    return sum(m.sample("ofsys_assigned_partitions") for m in members)


def test_scaling_the_group_moves_state_without_loss(harness: Harness) -> None:
    topic = harness.new_topic("scale", 6)
    env = harness.env(topic, **GROUP_ENV)
    records = shop_records(harness.family, 6000, seed=41)
    feeder = producing(harness, topic, records, seconds=20)
    group = [harness.spawn(env) for _ in range(3)]
    wait_for(lambda: assigned(group) == 6, 60, "3 members sharing 6 partitions")
    time.sleep(3)
    assert group[0].terminate() == 0  # stop one: its partitions and their state move
    wait_for(lambda: assigned(group[1:]) == 6, 60, "2 members taking over")
    group[0] = harness.spawn(env)  # start it again
    wait_for(lambda: assigned(group) == 6, 60, "3 members again")
    group.append(harness.spawn(env))  # add a fourth
    wait_for(
        lambda: (
            assigned(group) == 6 and all(m.sample("ofsys_assigned_partitions") > 0 for m in group)
        ),
        60,
        "4 members",
    )
    feeder.join(60)
    harness.wait_committed(len(records), 120, "every record committed", topic=topic)
    report(harness, "3 -> 2 -> 3 -> 4 members")
    harness.assert_ledger_matches(records)
    for member in group:
        assert member.terminate() == 0


def test_more_members_than_partitions_idle_and_say_so(harness: Harness) -> None:
    topic = harness.new_topic("idle", 1)
    env = harness.env(topic, **GROUP_ENV)
    members = [harness.spawn(env) for _ in range(2)]
    wait_for(lambda: assigned(members) == 1, 60, "one partition assigned")
    idle = next(m for m in members if m.sample("ofsys_assigned_partitions") == 0)
    wait_for(
        lambda: "idle, ready to take over" in idle.log() or "no partitions assigned" in idle.log(),
        30,
        "the idle log line",
    )
    status, body = idle.ready()
    assert status == 503 and "no partitions assigned" in body["problems"]
    records = shop_records(harness.family, 300, seed=51)
    harness.produce(records, topic)
    busy = next(m for m in members if m is not idle)
    assert busy.terminate() == 0  # the idle member takes over, with the state
    wait_for(lambda: idle.sample("ofsys_assigned_partitions") == 1, 60, "take-over")
    harness.wait_committed(len(records), 60, "every record committed", topic=topic)
    harness.assert_ledger_matches(records)


def test_records_not_keyed_by_cart_id_give_the_same_ledger(harness: Harness) -> None:
    records = shop_records(harness.family, 3000, seed=61)
    # Half the visitors' events keyed by a user id instead of the cart id, as some
    # producers do (consistently per visitor, so a visitor's events keep their order;
    # records with no key at all are spread at random and no pipeline can order them).
    mixed = [
        (key if zlib.crc32(key.encode()) % 2 else f"user-{zlib.crc32(key.encode())}", value)
        for key, value in records
    ]
    harness.produce(mixed)
    pipeline = harness.start()
    harness.wait_committed(len(records), 90, "every input record committed")
    wait_for(
        lambda: (
            pipeline.sample("ofsys_events_total", event="Viewed Page", outcome="repartitioned") > 0
        ),
        10,
        "the re-keyed count",
    )
    rekeyed = sum(
        pipeline.sample("ofsys_events_total", event=name, outcome="repartitioned")
        for name in (
            "Viewed Page",
            "Viewed Product Detail",
            "Added Product",
            "Removed Product",
            "Completed Transaction",
        )
    )
    assert 0 < rekeyed < len(records)
    wait_for(
        lambda: (
            sum(
                harness.committed(
                    f"{harness.group}.{harness.topic}.repartition", harness.group
                ).values()
            )
            >= rekeyed
        ),
        60,
        "the re-keyed records committed",
    )
    harness.assert_ledger_matches(records)
    assert pipeline.terminate() == 0
