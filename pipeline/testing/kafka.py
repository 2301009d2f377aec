"""The fake broker clients: `FakeConsumer` (the `Consumer` port, with the records it
hands out, `FakeMessage`, and its commit results, `CommitResult`) and `FakeOutputs`
(the `Outputs` port, the producer, with the records it took, `Produced`).

`FakeConsumer` keeps topics of partitions in memory, positions, pause/resume/seek,
commit (with injectable per-partition errors) and scripted rebalances (assign, revoke,
lost), run inside `consume()` as librdkafka runs its callbacks inside a poll.
`FakeOutputs` keeps records per topic, pending until `flush`, whose result can be held
back (`hold`) to play a broker that has not taken them yet.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import TopicPartition

from ..runtime.ports import Rebalance
from ..source.partitioner import PARTITIONERS
from .clock import FakeClock

Source = tuple[str, int]
OFFSET_INVALID = -1001


@dataclass
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _headers: list[tuple[str, bytes]] | None = None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def error(self) -> None:
        return None


@dataclass
class CommitResult:
    """A partition's commit result, shaped like confluent-kafka's TopicPartition."""

    topic: str
    partition: int
    offset: int
    error: Any = None


class FakeConsumer:
    """A group member on in-memory topics. Rebalances are scripted with `assign`,
    `revoke` and `lose`, and happen inside the next `consume()`."""

    def __init__(self, topics: dict[str, int], partitioner: str = "murmur2") -> None:
        self.logs: dict[Source, list[FakeMessage]] = {
            (topic, p): [] for topic, count in topics.items() for p in range(count)
        }
        self.partitions = dict(topics)
        self.positions: dict[Source, int] = {}
        self.paused: set[Source] = set()
        self.group_committed: dict[Source, int] = {}
        self.commit_errors: dict[Source, Any] = {}  # injected: the next commits fail so
        self.commits: list[dict[Source, int]] = []  # every successful commit, in order
        self._assignment: list[Source] = []
        self._script: collections.deque[tuple[str, list[Source]]] = collections.deque()
        self._callbacks: dict[str, Rebalance] = {}
        self._partition_of = PARTITIONERS[partitioner]
        self.closed = False

    # -- what a test does --------------------------------------------------------------

    def add(
        self, topic: str, key: str | bytes | None, value: bytes, partition: int | None = None
    ) -> FakeMessage:
        """Append a record; by default to the partition the producers' partitioner
        gives its key."""
        raw = key.encode() if isinstance(key, str) else key
        if partition is None:
            partition = self._partition_of(raw or b"", self.partitions[topic])
        log = self.logs[(topic, partition)]
        message = FakeMessage(topic, partition, len(log), raw, value)
        log.append(message)
        return message

    def assign_next(self, sources: list[Source]) -> None:
        self._script.append(("assign", sources))

    def revoke_next(self) -> None:
        self._script.append(("revoke", []))

    def lose_next(self) -> None:
        self._script.append(("lost", []))

    def end(self, source: Source) -> int:
        return len(self.logs[source])

    # -- the Consumer protocol ---------------------------------------------------------

    def subscribe(
        self, topics: list[str], *, on_assign: Rebalance, on_revoke: Rebalance, on_lost: Rebalance
    ) -> None:
        self._callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        while self._script:
            kind, sources = self._script.popleft()
            if kind == "assign":
                self._callbacks["assign"](self, [TopicPartition(t, p) for t, p in sources])
            else:
                gone = [TopicPartition(t, p) for t, p in self._assignment]
                self._callbacks[kind](self, gone)
                self._assignment = []
                self.paused.clear()
        out: list[Any] = []
        for source in self._assignment:
            if source in self.paused:
                continue
            log = self.logs[source]
            start = self.positions[source]
            taken = log[start : start + num_messages - len(out)]
            out.extend(taken)
            self.positions[source] = start + len(taken)
        return out

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._assignment = [(tp.topic, tp.partition) for tp in partitions]
        for source in self._assignment:
            self.positions[source] = self.group_committed.get(source, 0)

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self._assignment]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused.update((tp.topic, tp.partition) for tp in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused.difference_update((tp.topic, tp.partition) for tp in partitions)

    def seek(self, partition: TopicPartition) -> None:
        self.positions[(partition.topic, partition.partition)] = partition.offset

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(
                tp.topic,
                tp.partition,
                self.group_committed.get((tp.topic, tp.partition), OFFSET_INVALID),
            )
            for tp in partitions
        ]

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        results = []
        done: dict[Source, int] = {}
        for tp in offsets:
            source = (tp.topic, tp.partition)
            error = self.commit_errors.get(source)
            if error is None:
                self.group_committed[source] = done[source] = tp.offset
            results.append(CommitResult(tp.topic, tp.partition, tp.offset, error))
        if done:
            self.commits.append(done)
        return cast("list[TopicPartition]", results)

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.positions.get((tp.topic, tp.partition), 0))
            for tp in partitions
        ]

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = 0.0, cached: bool = False
    ) -> tuple[int, int]:
        return 0, len(self.logs[(partition.topic, partition.partition)])

    def close(self) -> None:
        if self._assignment and not self.closed:
            gone = [TopicPartition(t, p) for t, p in self._assignment]
            self._callbacks["revoke"](self, gone)
        self._assignment = []
        self.closed = True


@dataclass
class Produced:
    topic: str
    key: bytes | str | None
    value: bytes | None
    partition: int
    headers: list[tuple[str, Any]] | None


@dataclass
class FakeOutputs:
    """The producer: records pending until a `flush` the test lets through."""

    pending: list[Produced] = field(default_factory=list)
    durable: list[Produced] = field(default_factory=list)
    hold: bool = False  # True: flush takes nothing (the broker is slow or away)
    flushes: list[float] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # "flush" as it happens, for ordering
    clock: FakeClock | None = None  # given: a held flush takes its whole timeout
    refused: dict[str, Callable[[Any, Any], None]] = field(default_factory=dict)

    def produce(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        partition: int = -1,
        headers: list[tuple[str, Any]] | None = None,
    ) -> None:
        self.pending.append(Produced(topic, key, value, partition, headers))

    def produce_many(
        self, topic: str, records: list[tuple[bytes, bytes | None]], partition: int
    ) -> None:
        for key, value in records:
            self.produce(topic, key, value, partition)

    def flush(self, timeout_s: float) -> int:
        self.flushes.append(timeout_s)
        if self.hold:
            if self.clock is not None:
                self.clock.advance(timeout_s)
            return len(self.pending)
        self.durable.extend(self.pending)
        self.pending.clear()
        self.events.append("flush")
        return 0

    def limit(self, topic: str) -> int:
        return 1_000_000

    def on_refused(self, topic: str, handler: Callable[[Any, Any], None]) -> None:
        self.refused[topic] = handler

    def topic(self, name: str) -> list[Produced]:
        """The records the broker took for `name`."""
        return [r for r in self.durable if r.topic == name]
