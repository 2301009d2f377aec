"""Offsets: what the loop has processed, what a sealed window covers, what is committed.

A `Window` is everything processed between two seals: its commands and, per partition,
the next offset after its last record. A window's offsets are committed only once the
delivery worker reports all its commands accepted or dead-lettered, and only for
partitions still assigned in the same assignment generation (a partition that moved
away and came back must not have an older window's offsets committed over newer ones).
"""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaException, TopicPartition

from . import logs
from .dedupe import Command

log = logs.get("commit")


Records = list[tuple[bytes, bytes | None]]
Source = tuple[str, int]  # (topic, partition): the input topic, or its repartition topic


class Window:
    __slots__ = ("changelog", "commands", "event_ms", "events", "generation", "offsets", "triggers")

    def __init__(
        self,
        commands: list[Command],
        *,
        changelog: dict[int, Records],
        offsets: dict[Source, int],
        event_ms: dict[Source, int],
        events: int,
        generation: int,
    ) -> None:
        self.commands = commands
        self.changelog = changelog
        self.triggers: list[Command] = []  # Trigger commands, also for the triggers topic
        self.offsets = offsets
        self.event_ms = event_ms
        self.events = events
        self.generation = generation


class Offsets:
    """Keyed by (topic, partition): a partition's state serves the input topic's
    partition and the repartition topic's partition of the same number."""

    def __init__(self) -> None:
        self.generation = 0
        self.positions: dict[Source, int] = {}  # next offset to commit
        self.event_ms: dict[Source, int] = {}  # event time of the record before that offset
        self.committed: dict[Source, int] = {}
        self.committed_event_ms: dict[Source, int] = {}
        self.events = 0  # processed since the last seal

    def seal(self, commands: list[Command], changelog: dict[int, Records]) -> Window:
        window = Window(
            commands,
            changelog=changelog,
            offsets=dict(self.positions),
            event_ms=dict(self.event_ms),
            events=self.events,
            generation=self.generation,
        )
        self.events = 0
        return window

    def forget(self, source: Source) -> None:
        for table in (self.positions, self.event_ms, self.committed, self.committed_event_ms):
            table.pop(source, None)

    def current(self, windows: list[Window]) -> list[Window]:
        """The windows sealed in this assignment generation; older ones are not ours to
        commit (or to write to the changelog) any more."""
        return [window for window in windows if window.generation == self.generation]

    def commit(self, consumer: Consumer, windows: list[Window]) -> bool:
        """Commit, synchronously, the newest offsets the (current) windows cover."""
        latest: dict[Source, tuple[int, int]] = {}
        for window in windows:
            for source, offset in window.offsets.items():
                latest[source] = (offset, window.event_ms.get(source, 0))
        offsets = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), (offset, _) in latest.items()
            if (topic, partition) in self.positions
            and self.committed.get((topic, partition)) != offset
        ]
        if not offsets:
            return False
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Left uncommitted, the records are processed again with the same command
            # ids; Journey keeps one copy. Safe, so a warning, not a failure.
            log.warning("offset commit failed", extra={"error": str(exc.args[0])})
            return False
        for tp in offsets:
            source = (tp.topic, tp.partition)
            self.committed[source] = tp.offset
            self.committed_event_ms[source] = latest[source][1]
        return True
