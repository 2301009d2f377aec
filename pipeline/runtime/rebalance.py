"""The rebalance callbacks: what the loop does when partitions are assigned, revoked or lost.

Owns `Rebalancing`, the part of `Pipeline` (loop.py) that librdkafka calls back on the
loop thread from inside `consume`: taking an assignment (restoring state from the
changelog before any of its records is processed), settling a revocation under a
deadline, and forgetting released partitions. Invariants: a revoked partition's
processed records are delivered and committed (within the deadline) before it is let
go; a lost one is forgotten without committing; the seal and commit order stays in
`Checkpoint`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from confluent_kafka import TopicPartition

from .. import logs
from ..state.partition import PartitionState
from .memory import release
from .offsets import Deadline

if TYPE_CHECKING:
    from ..config import Settings
    from ..metrics import Metrics
    from ..server import Health
    from ..state.partition import Retention
    from ..state.triggers import TriggerSettings
    from .backpressure import Backpressure
    from .checkpoint import Checkpoint
    from .ports import Clock, Parts
    from .process import Processor
    from .replay import Replay

log = logs.get("app")


class Rebalancing:
    """The assignment callbacks of `Pipeline`, which provides the attributes below."""

    settings: Settings
    metrics: Metrics
    health: Health
    topic: str
    parts: Parts
    states: dict[int, PartitionState]
    checkpoint: Checkpoint
    replay: Replay
    _backpressure: Backpressure
    _clock: Clock
    _retention: Retention
    _triggers: TriggerSettings
    _drained: bool
    _process: Processor
    _stop_at: float | None

    if TYPE_CHECKING:

        def seal(self) -> None: ...

        def _drain_deadline(self) -> Deadline: ...

    # -- rebalances ----------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        # librdkafka keeps a partition's pause across a lost assignment: say it anew
        if self._backpressure.paused:
            consumer.pause(partitions)
        else:
            consumer.resume(partitions)
        self.checkpoint.assigned(partitions)
        numbers = sorted({tp.partition for tp in partitions} - set(self.states))
        if self.parts.store is None:
            self.states.update(
                {p: PartitionState(self._retention, self._triggers) for p in numbers}
            )
        elif numbers:
            self._restore(numbers)
            for partition in numbers:
                self.replay.resume_marks(partition, self.states[partition].marks)
        self._assignment_changed("assigned", partitions)

    def _restore(self, partitions: list[int]) -> None:
        """Rebuild the assigned partitions' state from the changelog before any of their
        records is processed (this runs inside the assignment callback; a `stop()`
        meanwhile abandons it with RestoreInterruptedError, which `run` expects)."""
        store = self.parts.store
        assert store is not None
        self.health.restoring += 1
        started = self._clock.monotonic()
        try:
            states, records = store.restore(partitions, lambda: self._stop_at is not None)
        finally:
            self.health.restoring -= 1
        self.states.update(states)
        release()  # the restore's fetched records are freed
        elapsed = self._clock.monotonic() - started
        self.metrics.restore_seconds.observe(elapsed)
        self.metrics.restored_records.inc(records)
        log.info(
            "state restored",
            extra={
                "topic": store.topic,
                "partitions": partitions,
                "records": records,
                "carts": sum(len(states[p].carts) for p in partitions),
                "seconds": round(elapsed, 3),
            },
        )

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Deliver and commit what the revoked partitions processed before letting go,
        under a deadline as long as the shutdown's (after a drain, closing the consumer
        revokes with nothing left to do)."""
        if not self._drained:
            deadline = Deadline(self._clock, self.settings.shutdown_timeout_s)
            if self._stop_at is not None:  # stopping: the shutdown's deadline comes first
                deadline.at = min(deadline.at, self._drain_deadline().at)
            self.seal()
            if not self.checkpoint.settle(deadline):
                log.warning(
                    "Journey or the broker did not finish in time; revoked partitions' "
                    "last records stay uncommitted and their new owner processes them again"
                )
        self._release(partitions)
        self._assignment_changed("revoked", partitions)

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._release(partitions)
        self._assignment_changed("lost", partitions)

    def _release(self, partitions: list[TopicPartition]) -> None:
        self.checkpoint.release(partitions)
        for tp in partitions:
            self.states.pop(tp.partition, None)
            self.replay.forget(tp)
            label = str(tp.partition)
            for gauge in (self.metrics.carts, self.metrics.event_ids):
                with contextlib.suppress(KeyError):
                    gauge.remove(label)

    def _assignment_changed(self, kind: str, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels(kind).inc()
        assigned = len(self.states)
        self.metrics.assigned.set(assigned)
        self.health.assigned = assigned
        if self.parts.limit is not None:  # this member's share of the group's rate limit
            self.parts.limit.share(assigned, self._process.source_partitions)
        by_topic: dict[str, list[int]] = {self.topic: []}  # one line per topic, input first
        for tp in partitions:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        for topic, numbers in by_topic.items():
            if not numbers and len(by_topic) > 1:
                continue
            log.info(
                f"partitions {kind}",
                extra={
                    "topic": topic,
                    "partitions": sorted(numbers),
                    "assigned": sorted(self.states),
                },
            )
        if assigned == 0 and self._stop_at is None:  # closing revokes all: not idle, exiting
            log.info("no partitions assigned: idle, ready to take over on the next rebalance")
