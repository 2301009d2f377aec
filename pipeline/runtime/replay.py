"""Replay to seal marks: close a restored partition's windows where they closed before.

Owns the partitions whose restored seal marks lie ahead of the committed offsets, and
the topic-partitions held (paused and sought back) at a mark. Invariant: while a
partition has a mark ahead, each of its records is processed alone and the partition is
flushed exactly at each mark, so a replay makes the same commands with the same ids; a
record past a mark that the partition's other topic has not reached yet waits. A mark
no record reaches within REPLAY_STALL_S is dropped, and windows close anew from there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from confluent_kafka import TopicPartition

from .. import logs
from .checkpoint import Checkpoint, Source

if TYPE_CHECKING:
    from .ports import Clock, Consumer

log = logs.get("replay")
REPLAY_STALL_S = 30.0  # a mark not reached after this long without progress is dropped


class Replay:
    def __init__(
        self,
        *,
        topic: str,
        consumer: Consumer,
        checkpoint: Checkpoint,
        clock: Clock,
        process: Callable[[list[Any]], None],
        paused: Callable[[], bool],
    ) -> None:
        self.stops: dict[int, list[list[int]]] = {}  # replaying partitions: closes ahead
        self.held: set[Source] = set()  # paused and sought back until a mark is reached
        self._progress: dict[int, float] = {}
        self._topic = topic
        self._consumer = consumer
        self._checkpoint = checkpoint
        self._clock = clock
        self._process = process
        self._paused = paused

    def __bool__(self) -> bool:
        return bool(self.stops)

    def resume_marks(self, partition: int, marks: list[list[int]]) -> None:
        """The restored seal marks still ahead of the committed offsets: the windows
        the previous owner sealed and may have delivered, to be closed again there."""
        positions = self._checkpoint.offsets.positions
        start = [positions.get(s, 0) for s in self._checkpoint.sources(partition)]
        ahead = [list(m) for m in marks if m[0] > start[0] or m[1] > start[1]]
        self._checkpoint.marks[partition] = [list(m) for m in ahead]
        if ahead:
            self.stops[partition] = ahead
            log.info(
                "replaying to the previous owner's window closes",
                extra={"partition": partition, "marks": len(ahead)},
            )

    def records(self, records: list[Any]) -> None:
        """The slow path: each record of a replaying partition is processed alone, and
        the partition is flushed exactly at each mark."""
        stops, held = self.stops, self.held
        for msg in records:
            partition = msg.partition()
            marks = stops.get(partition) if partition is not None else None
            if not marks or msg.error() is not None:
                self._process([msg])
                continue
            source: Source = (msg.topic(), partition)
            if source in held:
                continue
            offset: int = msg.offset()
            if offset >= marks[0][0 if source[0] == self._topic else 1]:
                tp = TopicPartition(source[0], source[1], offset)
                self._consumer.pause([tp])
                self._consumer.seek(tp)
                held.add(source)
                log.debug(
                    "waiting at a seal mark",
                    extra={"topic": source[0], "partition": source[1], "offset": offset},
                )
                continue
            self._process([msg])
            self._progress[partition] = self._clock.monotonic()
            self._close_reached(partition)

    def _close_reached(self, partition: int) -> None:
        """Flush the partition at every mark both its topics have reached; resume what
        waited for it; leave replay when no mark is left ahead."""
        checkpoint = self._checkpoint
        marks = self.stops[partition]
        here = checkpoint.sources(partition)
        positions = checkpoint.offsets.positions
        state = checkpoint.states[partition]
        reached = False
        while marks and all(positions.get(s, 0) >= m for s, m in zip(here, marks[0], strict=True)):
            checkpoint.flush_partition(partition, state.stream_ms, mark=False)
            marks.pop(0)
            reached = True
        if not marks:
            del self.stops[partition]
            self._progress.pop(partition, None)
            log.info(
                "replay closed every window where it closed before", extra={"partition": partition}
            )
        if reached:
            waiting = [s for s in here if s in self.held]
            if waiting:
                self.held.difference_update(waiting)
                if not self._paused():
                    self._consumer.resume([TopicPartition(t, p) for t, p in waiting])

    def give_up_stalled(self) -> None:
        """A mark that no record reaches (its records are gone) must not hold the
        partition forever: after REPLAY_STALL_S without progress it is dropped."""
        now = self._clock.monotonic()
        for partition in list(self.stops):
            since = self._progress.setdefault(partition, now)
            if now - since > REPLAY_STALL_S:
                log.warning(
                    "seal marks not reached; closing windows anew",
                    extra={"partition": partition, "marks": len(self.stops[partition])},
                )
                self.stops[partition] = []
                self._close_reached(partition)

    def forget(self, tp: TopicPartition) -> None:
        self.stops.pop(tp.partition, None)
        self._progress.pop(tp.partition, None)
        self.held.discard((tp.topic, tp.partition))
