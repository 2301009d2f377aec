"""Seal marks replay: a restored partition with marks ahead of its committed offset
closes its windows exactly there, so a replay re-sends the same commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.metrics import Metrics
from pipeline.runtime.checkpoint import Source, Window
from pipeline.runtime.loop import Pipeline
from pipeline.server import Health
from pipeline.testing import FakeConsumer, fake_parts

from .conftest import TOPIC, Rig, fill, settings


def spy_closes(pipeline: Pipeline) -> list[list[int]]:
    closes: list[list[int]] = []
    offsets = pipeline.checkpoint.offsets
    real = offsets.flushed

    def flushed(window: Window, sources: tuple[Source, Source]) -> list[int]:
        mark = real(window, sources)
        closes.append(mark)
        return mark

    offsets.flushed = flushed  # type: ignore[method-assign]
    return closes


def test_a_restored_partition_closes_its_windows_at_its_seal_marks(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    first = rig()
    consumer = first.fakes.consumer
    consumer.commit_errors[(TOPIC, 0)] = "NOT_COORDINATOR"  # delivered, never committed
    fill(first, records[:100])
    first.window()
    for key, value in records[100:230]:
        consumer.add(TOPIC, key, value)
    first.turn()
    first.window()
    assert first.pipeline.checkpoint.marks[0] == [[100, 0], [230, 0]]
    assert first.committed() == {}
    delivered = [c["id"] for c in first.fakes.journey.accepted]
    for key, value in records[230:300]:
        consumer.add(TOPIC, key, value)
    # the process dies; the next owner restores the state and the marks
    s = settings()
    fakes = fake_parts(s, Metrics(), outputs=first.fakes.outputs)
    fakes.consumer.logs = consumer.logs
    second = Pipeline(s, Metrics(), Health(poll_stale_s=30), fakes.parts)
    closes = spy_closes(second)
    second.start()
    fakes.consumer.assign_next([(TOPIC, 0), (s.repartition_topic, 0)])
    second.turn()  # restored, replaying: every record one by one, flushed at each mark
    assert closes == [[100, 0], [230, 0]]
    assert not second.replay
    fakes.clock.advance(1.0)
    second.turn()
    assert closes[-1] == [300, 0]
    assert fakes.consumer.group_committed == {(TOPIC, 0): 300}
    resent = [c["id"] for c in fakes.journey.accepted]
    # the state came back from after the delivered windows: their records are replays
    assert not set(resent) & set(delivered)


def test_a_record_past_a_mark_waits_until_the_other_topic_reaches_it(
    records: list[tuple[str, bytes]],
) -> None:
    s = settings()
    fakes = fake_parts(s, Metrics())
    pipeline = Pipeline(s, Metrics(), Health(poll_stale_s=30), fakes.parts)
    pipeline.start()
    consumer: FakeConsumer = fakes.consumer
    for key, value in records[:20]:
        consumer.add(TOPIC, key, value)
    for key, value in records[20:30]:
        consumer.add(s.repartition_topic, key, value, partition=0)
    consumer.assign_next([(TOPIC, 0), (s.repartition_topic, 0)])
    marks: Any = [[10, 5]]
    pipeline.turn()  # assigned and read; rewind, and put a mark ahead as a restore would
    consumer.positions = {(TOPIC, 0): 0, (s.repartition_topic, 0): 0}
    pipeline.checkpoint.offsets.positions.update(consumer.positions)
    pipeline.replay.resume_marks(0, marks)
    closes = spy_closes(pipeline)
    pipeline.replay.records(consumer.consume(100, 0))
    # input records from offset 10 waited (paused, sought back) until the repartition
    # topic reached 5; then the partition was flushed exactly there
    assert closes == [[10, 5]]
    assert not pipeline.replay.held
    assert consumer.positions[(TOPIC, 0)] == 10
    pipeline.turn()
    assert pipeline.checkpoint.offsets.positions[(TOPIC, 0)] == 20
