"""Durable state on a real broker: restore, kill -9, and scaling by partition count."""

from __future__ import annotations

import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from pipeline import config
from pipeline.metrics import Metrics
from pipeline.runtime import topics
from pipeline.runtime.changelog import Changelog
from pipeline.runtime.loop import Pipeline
from pipeline.runtime.outputs import Outputs
from pipeline.server import Health
from pipeline.source.schemas import SchemaFamily
from pipeline.tools.broker import EmbeddedBroker
from pipeline.tools.emulator import JourneyEmulator

from .checks import assert_nothing_lost_or_doubled, committed, shop_records, wait_committed
from .conftest import PipelineProcess, pipeline_env, produce, start_process, wait_for


def producing(
    broker: EmbeddedBroker, topic: str, records: list[tuple[str, bytes]], seconds: float
) -> threading.Thread:
    """Produce `records` spread over `seconds` in the background (bounded; ends itself)."""

    def run() -> None:
        chunks = 20
        size = -(-len(records) // chunks)
        for start in range(0, len(records), size):
            produce(broker, topic, records[start : start + size])
            time.sleep(seconds / chunks)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_restore_takes_the_state_back_exactly(
    broker: EmbeddedBroker, journey: JourneyEmulator, topic: str, family: SchemaFamily
) -> None:
    records = shop_records(family, 3000, seed=21)
    produce(broker, topic, records)
    settings = config.load(
        {**pipeline_env(broker, journey, topic), "OFSYS_METRICS_PORT": "0"}  # in this process
    )
    pipeline = Pipeline(settings, Metrics(), Health(poll_stale_s=30))
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    wait_for(lambda: sum(pipeline.committed().values()) == len(records), 60, "all committed")
    before = pipeline.state_snapshot()
    pipeline.stop()
    runner.join(30)
    assert sum(len(s["carts"]) for s in before.values()) > 100  # type: ignore[arg-type]
    states, restored_records = Changelog(settings, Outputs(settings)).restore(sorted(before))
    assert restored_records > 0
    assert {p: state.snapshot() for p, state in states.items()} == before


@pytest.fixture
def group_env(broker: EmbeddedBroker, journey: JourneyEmulator) -> Callable[[str], dict[str, str]]:
    def env(topic: str) -> dict[str, str]:
        return pipeline_env(broker, journey, topic, OFSYS_FLUSH_INTERVAL_MS="300")

    return env


@pytest.fixture
def processes() -> Iterator[list[PipelineProcess]]:
    started: list[PipelineProcess] = []
    yield started
    for process in started:
        process.kill()


def report(journey: JourneyEmulator, label: str) -> None:
    ledger = journey.ledger()
    print(
        f"{label}: Journey kept {ledger['accepted']} commands; received "
        f"{ledger['duplicates_received']} again by id (at-least-once on the wire)"
    )


def test_kill_9_at_random_moments_loses_and_doubles_nothing(
    broker: EmbeddedBroker,
    journey: JourneyEmulator,
    topic: str,
    family: SchemaFamily,
    group_env: Callable[[str], dict[str, str]],
    processes: list[PipelineProcess],
) -> None:
    records = shop_records(family, 6000, seed=31)
    feeder = producing(broker, topic, records, seconds=12)
    env = group_env(topic)
    rng = random.Random(7)
    current = start_process(env, processes)
    for _ in range(5):
        time.sleep(rng.uniform(1.5, 4.0))
        current.kill()
        current = start_process(env, processes)
    feeder.join(60)
    wait_committed(
        broker,
        env["OFSYS_GROUP_ID"],
        topic,
        len(records),
        120,
        "every record committed after the kills",
    )
    report(journey, "kill -9 x5")
    assert_nothing_lost_or_doubled(journey, family, records)
    assert current.terminate() == 0


def test_scaling_the_group_moves_state_without_loss(
    broker: EmbeddedBroker,
    journey: JourneyEmulator,
    family: SchemaFamily,
    group_env: Callable[[str], dict[str, str]],
    processes: list[PipelineProcess],
) -> None:
    topic = f"scale-{time.monotonic_ns()}"
    topics.ensure(AdminClient({"bootstrap.servers": broker.bootstrap}), topic, 6)
    env = group_env(topic)
    records = shop_records(family, 6000, seed=41)
    feeder = producing(broker, topic, records, seconds=20)
    group = [start_process(env, processes) for _ in range(3)]

    def assigned(members: list[PipelineProcess]) -> float:
        return sum(m.sample("ofsys_assigned_partitions") for m in members)

    wait_for(lambda: assigned(group) == 6, 60, "3 members sharing 6 partitions")
    time.sleep(3)
    assert group[0].terminate() == 0  # stop one: its partitions and their state move
    wait_for(lambda: assigned(group[1:]) == 6, 60, "2 members taking over")
    group[0] = start_process(env, processes)  # start it again
    wait_for(lambda: assigned(group) == 6, 60, "3 members again")
    group.append(start_process(env, processes))  # add a fourth
    wait_for(
        lambda: (
            assigned(group) == 6 and all(m.sample("ofsys_assigned_partitions") > 0 for m in group)
        ),
        60,
        "4 members",
    )
    feeder.join(60)
    wait_committed(
        broker, env["OFSYS_GROUP_ID"], topic, len(records), 120, "every record committed"
    )
    report(journey, "3 -> 2 -> 3 -> 4 members")
    assert_nothing_lost_or_doubled(journey, family, records)
    for member in group:
        assert member.terminate() == 0


def test_more_members_than_partitions_idle_and_say_so(
    broker: EmbeddedBroker,
    journey: JourneyEmulator,
    family: SchemaFamily,
    group_env: Callable[[str], dict[str, str]],
    processes: list[PipelineProcess],
) -> None:
    topic = f"idle-{time.monotonic_ns()}"
    topics.ensure(AdminClient({"bootstrap.servers": broker.bootstrap}), topic, 1)
    env = group_env(topic)
    members = [start_process(env, processes) for _ in range(2)]
    wait_for(
        lambda: sum(m.sample("ofsys_assigned_partitions") for m in members) == 1,
        60,
        "one partition assigned",
    )
    idle = next(m for m in members if m.sample("ofsys_assigned_partitions") == 0)
    wait_for(
        lambda: "idle, ready to take over" in idle.log() or "no partitions assigned" in idle.log(),
        30,
        "the idle log line",
    )
    status, body = idle.ready()
    assert status == 503 and "no partitions assigned" in body["problems"]
    records = shop_records(family, 300, seed=51)
    produce(broker, topic, records)
    busy = next(m for m in members if m is not idle)
    assert busy.terminate() == 0  # the idle member takes over, with the state
    wait_for(lambda: idle.sample("ofsys_assigned_partitions") == 1, 60, "take-over")
    wait_committed(broker, env["OFSYS_GROUP_ID"], topic, len(records), 60, "every record committed")
    assert_nothing_lost_or_doubled(journey, family, records)


def test_records_not_keyed_by_cart_id_give_the_same_ledger(
    broker: EmbeddedBroker,
    journey: JourneyEmulator,
    topic: str,
    family: SchemaFamily,
    start_pipeline: Any,
) -> None:
    records = shop_records(family, 3000, seed=61)
    # Half the visitors' events keyed by a user id instead of the cart id, as some
    # producers do (consistently per visitor, so a visitor's events keep their order;
    # records with no key at all are spread at random and no pipeline can order them).
    mixed = [
        (key if zlib.crc32(key.encode()) % 2 else f"user-{zlib.crc32(key.encode())}", value)
        for key, value in records
    ]
    produce(broker, topic, mixed)
    pipeline = start_pipeline()
    wait_committed(broker, f"g-{topic}", topic, len(records), 90, "every input record committed")
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
            sum(committed(broker, f"g-{topic}", f"g-{topic}.{topic}.repartition").values())
            >= rekeyed
        ),
        60,
        "the re-keyed records committed",
    )
    assert_nothing_lost_or_doubled(journey, family, records)
    assert pipeline.terminate() == 0
