"""Fakes for driving the run loop without a broker or Journey (Bytewax's manner).

Shipped in the package, apart from the core: the runtime never imports this module.
Each fake implements one `Protocol` of `pipeline.runtime.ports`:

- `FakeConsumer`: topics of partitions in memory, positions, pause/resume/seek,
  commit (with injectable per-partition errors) and scripted rebalances (assign, revoke,
  lost), run inside `consume()` as librdkafka runs its callbacks inside a poll;
- `FakeOutputs`: records kept per topic, pending until `flush`, whose result can be
  held back (`hold`) to play a broker that has not taken them yet;
- `ScriptedJourney`: Journey answering from a script of statuses;
- `FakeWorker`: the delivery worker, synchronous, over a `ScriptedJourney`;
- `FakeStore`: the changelog, written through `FakeOutputs` (so durable only once
  flushed) and restored from what was flushed;
- `FakeClock`: monotonic and wall time that move only when told (or slept).

`fake_parts(settings, metrics)` puts them together as the loop's `Parts`.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import TopicPartition

from .config import Settings
from .errors import RejectedCommandsError, TransientDeliveryError, UnauthorizedError
from .journey.commands import Command
from .metrics import Metrics
from .runtime.changelog import retention, trigger_settings
from .runtime.checkpoint import Window
from .runtime.deadletter import DeadLetters
from .runtime.ports import Parts, Rebalance
from .source.partitioner import PARTITIONERS
from .state.partition import PartitionState

Source = tuple[str, int]
OFFSET_INVALID = -1001


class FakeClock:
    """Time that moves only by `advance` (or `sleep`, which advances it)."""

    def __init__(self, wall: float | None = None, monotonic: float = 1000.0) -> None:
        self.now = monotonic
        self.wall = time.time() if wall is None else wall

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += seconds


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


class ScriptedJourney:
    """Journey answering each request with the next status of `script` (then 200s).
    401/403 refuse the key, 400/422 reject, other non-2xx are transient."""

    def __init__(self, script: list[int] | None = None, retry_after: float | None = None) -> None:
        self.script = collections.deque(script or [])
        self.retry_after = retry_after
        self.accepted: list[Command] = []
        self.requests = 0
        self.closed = False

    def send(self, commands: list[Command]) -> None:
        self.requests += 1
        status = self.script.popleft() if self.script else 200
        if 200 <= status < 300:
            self.accepted.extend(commands)
            return
        if status in (401, 403):
            raise UnauthorizedError(f"Journey refused the account key ({status})", status=status)
        if status in (400, 422):
            raise RejectedCommandsError(f"rejected ({status})", status=status, errors={})
        raise TransientDeliveryError(
            f"Journey answered {status}",
            reason="throttled" if status == 429 else "server_error",
            status=status,
            retry_after=self.retry_after,
        )

    def close(self) -> None:
        self.closed = True


class FakeWorker:
    """The delivery worker, synchronous: windows are delivered (one request each, in
    order) when the loop asks what is `completed`. A failed request leaves the window
    outstanding and `retrying` set; the next call tries again."""

    def __init__(self, journey: ScriptedJourney) -> None:
        self.journey = journey
        self.queue: collections.deque[Window] = collections.deque()
        self.submitted: list[Window] = []  # every window handed over, in order
        self.retrying = False
        self.failure: BaseException | None = None
        self._unauthorized = False
        self.stopped_at: float | None = None

    @property
    def unauthorized(self) -> bool:
        return self._unauthorized

    @property
    def outstanding(self) -> int:
        return len(self.queue)

    def submit(self, window: Window) -> None:
        self.queue.append(window)
        self.submitted.append(window)

    def completed(self) -> list[Window]:
        done = []
        while self.queue:
            window = self.queue[0]
            try:
                if window.commands:
                    self.journey.send(window.commands)
            except UnauthorizedError:
                self.retrying = self._unauthorized = True
                break
            except TransientDeliveryError:
                self.retrying = True
                break
            self.retrying = self._unauthorized = False
            done.append(self.queue.popleft())
        return done

    def wait_idle(self, timeout_s: float) -> bool:
        return not self.queue

    def stop(self, deadline: float) -> None:
        self.stopped_at = deadline

    def join(self, timeout_s: float) -> None:
        pass


class FakeStore:
    """The changelog, through `FakeOutputs`: restore reads only what was flushed."""

    def __init__(self, outputs: FakeOutputs, settings: Settings) -> None:
        self.topic = settings.changelog_topic
        self._outputs = outputs
        self._settings = settings
        self.restores: list[list[int]] = []

    def write(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        for key, value in records:
            self._outputs.produce(self.topic, key, value, partition=partition)

    def restore(self, partitions: list[int]) -> tuple[dict[int, PartitionState], int]:
        self.restores.append(list(partitions))
        settings = self._settings
        states = {
            p: PartitionState(retention(settings), trigger_settings(settings)) for p in partitions
        }
        count = 0
        for record in self._outputs.topic(self.topic):
            if record.partition in states:
                key = record.key.encode() if isinstance(record.key, str) else record.key
                states[record.partition].load(key or b"", record.value)
                count += 1
        for state in states.values():
            state.rearm()
        return states, count


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
        {settings.topic: partitions, settings.repartition_topic: partitions},
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
