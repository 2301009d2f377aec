"""The checkpoint's order (marks before delivery, changelog before commit, nothing
committed while the producer has not flushed), its commit errors, and its deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pipeline.runtime.checkpoint import COMMIT_REFRESH_S
from pipeline.testing import ScriptedJourney

from .conftest import TOPIC, WINDOW_S, Rig, fill

MARKS_KEY = b"w"


def spy_commits(rig: Rig) -> list[int]:
    """The number of records the producer still held at each offset commit."""
    consumer, outputs = rig.fakes.consumer, rig.fakes.outputs
    pending_at_commit: list[int] = []
    real = consumer.commit

    def commit(**kwargs: Any) -> Any:
        pending_at_commit.append(len(outputs.pending))
        return real(**kwargs)

    consumer.commit = commit  # type: ignore[method-assign]
    return pending_at_commit


def test_seal_marks_are_durable_before_the_window_leaves(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig()
    fill(r, records[:100])
    r.fakes.outputs.hold = True  # the broker does not take the seal marks yet
    r.window()
    assert r.fakes.worker.submitted == []
    assert r.fakes.journey.requests == 0
    assert [p.key for p in r.fakes.outputs.pending if p.key == MARKS_KEY] == [MARKS_KEY]
    r.fakes.outputs.hold = False
    r.turn()
    assert len(r.fakes.worker.submitted) == 1
    marks = [p for p in r.fakes.outputs.topic(r.pipeline.settings.changelog_topic)]
    assert marks[0].key == MARKS_KEY  # flushed before the commands went out
    assert r.fakes.journey.accepted


def test_changelog_is_flushed_before_the_commit_and_nothing_committed_while_held(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig(journey=ScriptedJourney([503]))
    fill(r, records[:200])
    pending_at_commit = spy_commits(r)
    r.window()  # sealed, marks flushed, handed over; Journey answers 503
    assert r.fakes.journey.accepted == []
    r.fakes.outputs.hold = True
    r.turn(3)  # delivered now; its changelog records are produced, not yet taken
    assert r.committed() == {}
    assert r.fakes.journey.accepted  # Journey has the commands; the offsets wait
    state_records = [p for p in r.fakes.outputs.pending if p.key != MARKS_KEY]
    assert state_records  # the window's state changes, produced but not yet taken
    r.fakes.outputs.hold = False
    r.turn()
    assert r.committed() == {0: 200}
    assert pending_at_commit == [0]  # the commit came after everything was flushed
    durable = r.fakes.outputs.topic(r.pipeline.settings.changelog_topic)
    assert len(durable) >= len(state_records)


def test_a_failed_partition_commit_is_not_recorded_and_is_retried(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig(partitions=2)
    fill(r, records[:300], partitions=2)
    r.fakes.consumer.commit_errors[(TOPIC, 0)] = "REBALANCE_IN_PROGRESS"
    r.window()
    offsets = r.pipeline.checkpoint.offsets
    ends = {p: r.fakes.consumer.end((TOPIC, p)) for p in (0, 1)}
    assert r.committed() == {1: ends[1]}
    assert (TOPIC, 0) not in offsets.committed or offsets.committed[(TOPIC, 0)] == 0
    assert (TOPIC, 0) in offsets.failed
    assert r.pipeline.checkpoint.to_commit  # kept for the next try
    r.turn(2)
    assert r.committed() == {1: ends[1]}  # still failing: still not committed
    del r.fakes.consumer.commit_errors[(TOPIC, 0)]
    r.turn()
    assert r.committed() == ends
    assert offsets.committed[(TOPIC, 0)] == ends[0]
    assert not offsets.failed
    assert not r.pipeline.checkpoint.to_commit


def test_the_drain_keeps_its_deadline_while_the_broker_takes_nothing(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig(OFSYS_SHUTDOWN_TIMEOUT_S="8")
    fill(r, records[:100])
    r.fakes.outputs.hold = True  # every flush waits out its whole timeout
    started = r.fakes.clock.monotonic()
    r.pipeline.stop()
    r.pipeline.drain()
    r.pipeline.close()
    elapsed = r.fakes.clock.monotonic() - started
    assert elapsed <= 8.0
    assert sum(r.fakes.outputs.flushes) <= 8.0  # every flush was budgeted from one deadline
    assert r.committed() == {}
    assert r.fakes.journey.requests == 0  # the marks never became durable


def test_the_drain_keeps_its_deadline_while_journey_fails_and_commits_nothing(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig(journey=ScriptedJourney([503] * 10_000), OFSYS_SHUTDOWN_TIMEOUT_S="5")
    fill(r, records[:100])
    started = r.fakes.clock.monotonic()
    r.pipeline.stop()
    r.pipeline.drain()
    r.pipeline.close()
    assert r.fakes.clock.monotonic() - started <= 5.0
    assert r.fakes.worker.stopped_at is not None
    assert r.fakes.worker.stopped_at <= started + 5.0
    assert r.fakes.consumer.closed and r.fakes.journey.closed  # within what was left
    assert r.committed() == {}
    assert r.fakes.journey.accepted == []


def test_the_drain_gives_up_a_commit_that_keeps_failing_at_the_deadline(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig(OFSYS_SHUTDOWN_TIMEOUT_S="4")
    fill(r, records[:100])
    r.fakes.consumer.commit_errors[(TOPIC, 0)] = "COORDINATOR_NOT_AVAILABLE"
    started = r.fakes.clock.monotonic()
    r.pipeline.stop()
    r.pipeline.drain()
    offsets = r.pipeline.checkpoint.offsets
    assert (TOPIC, 0) in offsets.failed  # reported on the way out, never as committed
    assert offsets.committed.get((TOPIC, 0), 0) == 0
    r.pipeline.close()
    assert r.fakes.clock.monotonic() - started <= 4.0
    assert r.committed() == {}


def test_a_commit_the_broker_never_answers_is_abandoned_at_the_deadline(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig(OFSYS_SHUTDOWN_TIMEOUT_S="2")
    fill(r, records[:100])
    answer = threading.Event()
    consumer = r.fakes.consumer
    real = consumer.commit

    def hung_commit(**kwargs: Any) -> Any:  # librdkafka's synchronous commit, broker stalled
        r.fakes.clock.advance(2)  # the time it hangs passes for the loop too
        answer.wait(30)
        return real(**kwargs)

    consumer.commit = hung_commit  # type: ignore[method-assign]
    started = time.monotonic()
    r.pipeline.stop()
    r.pipeline.drain()
    offsets = r.pipeline.checkpoint.offsets
    assert (TOPIC, 0) in offsets.failed  # said on the way out, never as committed
    assert offsets.committed.get((TOPIC, 0), 0) == 0
    r.pipeline.close()
    assert time.monotonic() - started < 3.0  # real time: the join kept the deadline
    answer.set()


def test_an_offset_rewound_behind_the_owner_is_committed_again(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig()
    fill(r, records[:100])
    r.window()
    end = r.fakes.consumer.end((TOPIC, 0))
    assert r.committed() == {0: end}
    # a former owner's abandoned commit reaches the broker late, with older offsets
    r.fakes.consumer.group_committed[(TOPIC, 0)] = 10
    r.window()
    assert r.committed() == {0: 10}  # nothing new processed: not committed at once
    windows = int(COMMIT_REFRESH_S / WINDOW_S)
    for _ in range(windows):
        r.window()
    assert r.committed() == {0: end}  # within COMMIT_REFRESH_S, committed again
