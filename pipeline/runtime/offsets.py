"""Offsets and windows: what the loop has processed and what is sealed together.

Owns `Offsets` (each partition's position, committed offset and event time, and the
synchronous offset commit), `Window` (commands, changelog records, triggers and offsets
sealed together) and `Deadline` (one budget shared by every blocking step). `Checkpoint`
in checkpoint.py seals and commits with them.

Invariants. A window's offsets are those at each partition's last flush, never beyond.
Offsets are committed only for partitions still assigned, and only windows of the
current assignment generation are ours to commit; a partition the broker did not
commit is never recorded as committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from confluent_kafka import KafkaException, TopicPartition

from .. import logs
from ..journey.commands import Command

if TYPE_CHECKING:
    from .ports import Clock, Consumer

log = logs.get("commit")
T = TypeVar("T")

Records = list[tuple[bytes, bytes | None]]
Source = tuple[str, int]  # (topic, partition): the input topic, or its repartition topic


class Deadline:
    """One point in (the clock's) monotonic time that every blocking step shares."""

    def __init__(self, clock: Clock, seconds: float, *, start: float | None = None) -> None:
        self.clock = clock
        self.at = (clock.monotonic() if start is None else start) + seconds

    def remaining(self) -> float:
        return max(self.at - self.clock.monotonic(), 0.0)

    def budget(self, cap: float) -> float:
        """`cap`, or what is left of the deadline if that is less."""
        return min(cap, self.remaining())

    def passed(self) -> bool:
        return self.clock.monotonic() >= self.at

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.3f})"


class LateError(Exception):
    """A blocking step did not return within its budget (see `bounded`)."""


def bounded(step: Callable[[], T], seconds: float, what: str) -> T:
    """`step()`, a blocking call that takes no timeout of its own (librdkafka's
    synchronous commit, `close`), given at most `seconds`: it runs on a daemon thread
    that is abandoned past that (LateError). The step's own exception is raised here.
    An abandoned step that still returns says so: an offset commit that reaches the
    broker late may have rewound a partition that moved (COMMIT_REFRESH_S heals it)."""
    result: list[T] = []
    failure: list[BaseException] = []
    abandoned: list[float] = []  # when the caller stopped waiting

    def call() -> None:
        try:
            result.append(step())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)
        if abandoned:
            log.warning(
                "a step abandoned at its deadline returned later",
                extra={
                    "step": what,
                    "outcome": repr(failure[0]) if failure else "returned",
                    "seconds_late": round(time.monotonic() - abandoned[0], 3),
                },
            )

    thread = threading.Thread(target=call, name=f"ofsys-{what.replace(' ', '-')}", daemon=True)
    thread.start()
    thread.join(max(seconds, 0.0))
    if failure:
        raise failure[0]
    if not result:
        abandoned.append(time.monotonic())
        log.warning("deadline passed; not waiting any longer", extra={"step": what})
        raise LateError(what)
    return result[0]


class Window:
    """Everything sealed together: commands, changelog records, triggers, offsets."""

    __slots__ = ("changelog", "commands", "event_ms", "events", "generation", "offsets", "triggers")

    def __init__(self, generation: int) -> None:
        self.commands: list[Command] = []
        self.changelog: dict[int, Records] = {}
        self.triggers: list[Command] = []  # Trigger commands, also for the triggers topic
        self.offsets: dict[Source, int] = {}
        self.event_ms: dict[Source, int] = {}
        self.events = 0
        self.generation = generation

    def __bool__(self) -> bool:
        return bool(self.commands or self.offsets or self.changelog)


class Offsets:
    """Keyed by (topic, partition): a partition's state serves the input topic's
    partition and the repartition topic's partition of the same number."""

    def __init__(self) -> None:
        self.generation = 0
        self.positions: dict[Source, int] = {}  # next offset to process
        self.event_ms: dict[Source, int] = {}  # event time of the record before that offset
        self.committed: dict[Source, int] = {}
        self.committed_event_ms: dict[Source, int] = {}
        self.failed: set[Source] = set()  # partitions whose last commit the broker refused
        self.events = 0  # processed since the last seal

    def start(self, source: Source, offset: int) -> None:
        """Where an assigned partition starts: its committed offset (0 if none)."""
        self.positions[source] = self.committed[source] = max(offset, 0)

    def flushed(self, window: Window, sources: tuple[Source, Source]) -> list[int]:
        """Record in `window` that a partition was flushed here; its seal mark."""
        mark = []
        for source in sources:
            offset = self.positions.get(source, 0)
            mark.append(offset)
            window.offsets[source] = offset
            if source in self.event_ms:
                window.event_ms[source] = self.event_ms[source]
        return mark

    def forget(self, source: Source) -> None:
        for table in (self.positions, self.event_ms, self.committed, self.committed_event_ms):
            table.pop(source, None)
        self.failed.discard(source)

    def current(self, windows: list[Window]) -> list[Window]:
        """The windows sealed in this assignment generation; older ones are not ours to
        commit (or to write to the changelog) any more."""
        return [window for window in windows if window.generation == self.generation]

    def commit(
        self,
        consumer: Consumer,
        windows: list[Window],
        timeout: float | None = None,
        *,
        refresh: bool = False,
    ) -> bool:
        """Commit, synchronously, the newest offsets the (current) windows cover, waiting
        at most `timeout` s for the broker when given (a drain's deadline); with
        `refresh`, also those already committed (see COMMIT_REFRESH_S in checkpoint.py).
        True when every partition's commit succeeded (or there was nothing to commit); a
        partition the broker did not commit, or did not answer for in time, is never
        recorded as committed."""
        latest: dict[Source, tuple[int, int]] = {}
        for window in windows:
            for source, offset in window.offsets.items():
                latest[source] = (offset, window.event_ms.get(source, 0))
        offsets = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), (offset, _) in latest.items()
            if (topic, partition) in self.positions
            and (self.committed.get((topic, partition)) != offset or (refresh and offset > 0))
        ]
        if not offsets:
            return True

        def call() -> list[TopicPartition] | None:
            return consumer.commit(offsets=offsets, asynchronous=False)

        try:
            results = call() if timeout is None else bounded(call, timeout, "offset commit")
        except LateError:
            self.failed.update((tp.topic, tp.partition) for tp in offsets)
            return False
        except KafkaException as exc:
            # Left uncommitted, the windows stay with the caller and are committed on a
            # later try; if the process dies first, their records are processed again
            # with the same command ids. Never reported as committed.
            log.warning("offset commit failed; will retry", extra={"error": str(exc.args[0])})
            self.failed.update((tp.topic, tp.partition) for tp in offsets)
            return False
        ok = True
        for tp in results or offsets:
            source = (tp.topic, tp.partition)
            if tp.error is not None:
                ok = False
                self.failed.add(source)
                log.warning(
                    "offset commit failed for a partition; will retry",
                    extra={"topic": tp.topic, "partition": tp.partition, "error": str(tp.error)},
                )
            elif source in latest:
                self.failed.discard(source)
                self.committed[source] = tp.offset
                self.committed_event_ms[source] = latest[source][1]
        return ok
