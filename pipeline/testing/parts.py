"""`fake_parts(settings, metrics)`: every fake put together as the loop's `Parts`, and
`Fakes`, which holds them for a test to drive and inspect."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings
from ..metrics import Metrics
from ..runtime.deadletter import DeadLetters
from ..runtime.ports import Parts
from .clock import FakeClock
from .journey import FakeWorker, ScriptedJourney
from .kafka import FakeConsumer, FakeOutputs
from .store import FakeStore


@dataclass
class Fakes:
    """Every fake of one pipeline, and the `Parts` made of them."""

    consumer: FakeConsumer
    outputs: FakeOutputs
    journey: ScriptedJourney
    worker: FakeWorker
    store: FakeStore | None
    clock: FakeClock
    parts: Parts


def fake_parts(
    settings: Settings,
    metrics: Metrics,
    *,
    partitions: int = 1,
    journey: ScriptedJourney | None = None,
    clock: FakeClock | None = None,
    consumer: FakeConsumer | None = None,
    outputs: FakeOutputs | None = None,
) -> Fakes:
    """The loop's parts, all fakes; `consumer` and `outputs` may be shared between
    two pipelines (two members of one group)."""
    clock = clock or FakeClock()
    consumer = consumer or FakeConsumer(
        {
            settings.topic: partitions,
            settings.repartition_topic: partitions,
            settings.control_topic: partitions,
        },
        settings.partitioner,
    )
    outputs = outputs or FakeOutputs(clock=clock)
    journey = journey or ScriptedJourney()
    worker = FakeWorker(journey)
    store = FakeStore(outputs, settings) if settings.changelog else None
    dead_letters = DeadLetters(outputs, settings.dlq_topic, settings.topic, metrics)
    parts = Parts(
        consumer=consumer,
        outputs=outputs,
        worker=worker,
        client=journey,
        dead_letters=dead_letters,
        store=store,
        clock=clock,
        prepare=lambda: partitions,
    )
    return Fakes(consumer, outputs, journey, worker, store, clock, parts)
