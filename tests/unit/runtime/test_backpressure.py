"""Backpressure: consumption pauses while Journey retries or windows pile up, and
resumes after."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.runtime.backpressure import HOLD_MAX_S, MAX_OUTSTANDING_WINDOWS
from pipeline.testing import ScriptedJourney

from .conftest import TOPIC, Rig, fill


def test_consumption_pauses_while_journey_retries_and_resumes_after(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig(journey=ScriptedJourney([503, 429, 503]))
    fill(r, records[:100])
    consumer = r.fakes.consumer
    r.window()
    assert r.fakes.worker.retrying
    assert (TOPIC, 0) in consumer.paused
    assert r.metrics.registry.get_sample_value("ofsys_backpressure") == 1
    for key, value in records[100:200]:
        consumer.add(TOPIC, key, value)
    r.turn()
    assert consumer.positions[(TOPIC, 0)] == 100  # paused: nothing more read
    r.turn(3)  # Journey accepts again
    assert not r.fakes.worker.retrying
    assert not consumer.paused
    assert r.metrics.registry.get_sample_value("ofsys_backpressure") == 0
    r.turn()
    assert consumer.positions[(TOPIC, 0)] == 200


def test_consumption_pauses_while_windows_pile_up_and_resumes_after(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig()
    fill(r, records[:50])
    consumer = r.fakes.consumer
    r.fakes.outputs.hold = True  # the broker takes nothing: seal marks wait, and windows
    batches = [records[50 + 50 * n : 100 + 50 * n] for n in range(MAX_OUTSTANDING_WINDOWS + 1)]
    for batch in batches:
        r.window()
        for key, value in batch:
            consumer.add(TOPIC, key, value)
        r.turn()
    r.window()
    assert r.pipeline.checkpoint.waiting > MAX_OUTSTANDING_WINDOWS
    assert (TOPIC, 0) in consumer.paused
    assert r.committed() == {}
    read = consumer.positions[(TOPIC, 0)]
    assert read < consumer.end((TOPIC, 0))  # the last batch waits in the topic
    r.fakes.outputs.hold = False
    r.turn()
    assert r.pipeline.checkpoint.waiting == 0
    assert not consumer.paused
    assert r.committed() == {0: read}
    r.window()
    assert r.committed() == {0: consumer.end((TOPIC, 0))}


def test_windows_piling_up_hold_the_loop_before_they_pause_it(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    """A short pile-up holds (nothing read, partitions not paused: librdkafka keeps its
    prefetched records); one that lasts HOLD_MAX_S pauses; both end when Journey or the
    broker catches up."""
    r = rig()
    fill(r, records[:50])
    consumer = r.fakes.consumer
    r.fakes.outputs.hold = True
    for n in range(MAX_OUTSTANDING_WINDOWS + 1):
        for key, value in records[50 + 10 * n : 60 + 10 * n]:
            consumer.add(TOPIC, key, value)
        r.window()
    assert r.pipeline.checkpoint.waiting > MAX_OUTSTANDING_WINDOWS
    assert r.pipeline._backpressure.holding
    assert not consumer.paused
    assert r.metrics.registry.get_sample_value("ofsys_backpressure") == 1  # held back
    read = consumer.positions[(TOPIC, 0)]
    consumer.add(TOPIC, *records[90])
    r.turn()  # held: the new record is not read
    assert consumer.positions[(TOPIC, 0)] == read
    r.fakes.clock.advance(HOLD_MAX_S)
    r.turn()
    assert (TOPIC, 0) in consumer.paused
    assert not r.pipeline._backpressure.holding
    r.fakes.outputs.hold = False
    r.turn()
    assert not consumer.paused and not r.pipeline._backpressure.holding
    assert r.metrics.registry.get_sample_value("ofsys_backpressure") == 0
    r.turn()
    assert consumer.positions[(TOPIC, 0)] == read + 1
