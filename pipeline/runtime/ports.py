"""The seams of the run loop: what it needs of Kafka, the producer, Journey and time.

Owns the small `Protocol` types the loop and the checkpoint are written against. The
real ones (confluent-kafka's Consumer, `Outputs`, `DeliveryWorker` over `JourneyClient`,
the system clock) are built only in `wiring.py`; `pipeline.testing` has fakes.
Invariant: nothing here does I/O, and no runtime module but `wiring.py` constructs a
confluent-kafka or urllib3 object for the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from confluent_kafka import TopicPartition

from ..journey.commands import Command
from ..journey.ratelimit import RateLimit
from ..state.partition import PartitionState
from .checkpoint import Window
from .lag import BrokerWatch

if TYPE_CHECKING:
    from .deadletter import DeadLetters

Partitions = list[TopicPartition]
Rebalance = Callable[[Any, Partitions], None]


class Message(Protocol):
    """One consumed record (confluent-kafka's Message, or a fake)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> Any: ...
    def value(self) -> Any: ...
    def headers(self) -> Any: ...
    def error(self) -> Any: ...


class Consumer(Protocol):
    """The group member: the only object the loop thread polls."""

    def subscribe(
        self,
        topics: list[str],
        *,
        on_assign: Rebalance,
        on_revoke: Rebalance,
        on_lost: Rebalance,
    ) -> None: ...
    def consume(self, num_messages: int, timeout: float) -> list[Any]: ...
    def assign(self, partitions: Partitions) -> None: ...
    def assignment(self) -> Partitions: ...
    def pause(self, partitions: Partitions) -> None: ...
    def resume(self, partitions: Partitions) -> None: ...
    def seek(self, partition: TopicPartition) -> None: ...
    def committed(self, partitions: Partitions, timeout: float) -> Partitions: ...
    def commit(self, *, offsets: Partitions, asynchronous: Literal[False]) -> Partitions: ...
    def position(self, partitions: Partitions) -> Partitions: ...
    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = ..., cached: bool = ...
    ) -> tuple[int, int]: ...
    def close(self) -> None: ...


class Outputs(Protocol):
    """The producer side: everything the pipeline writes, made durable by `flush`."""

    def produce(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        partition: int = -1,
        headers: list[tuple[str, Any]] | None = None,
    ) -> None: ...
    def produce_many(
        self, topic: str, records: list[tuple[bytes, bytes | None]], partition: int
    ) -> None: ...
    def flush(self, timeout_s: float) -> int: ...
    def limit(self, topic: str) -> int: ...
    def on_refused(self, topic: str, handler: Callable[[Any, Any], None]) -> None: ...


class Worker(Protocol):
    """Delivers sealed windows to Journey, in order, off the loop thread."""

    failure: BaseException | None

    @property
    def retrying(self) -> bool: ...
    @property
    def unauthorized(self) -> bool: ...
    @property
    def outstanding(self) -> int: ...
    def submit(self, window: Window) -> None: ...
    def completed(self) -> list[Window]: ...
    def wait_idle(self, timeout_s: float) -> bool: ...
    def stop(self, deadline: float) -> None: ...
    def join(self, timeout_s: float) -> None: ...


class Client(Protocol):
    """What the loop does with the Journey client itself: close it."""

    def close(self) -> None: ...


class Store(Protocol):
    """The changelog: state records out, whole partitions' state back."""

    topic: str

    def write(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None: ...
    def restore(
        self, partitions: list[int], stopping: Callable[[], bool]
    ) -> tuple[dict[int, PartitionState], int]:
        """Raises RestoreInterruptedError once `stopping()` turns true."""


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def time(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class Service(Protocol):
    def stop(self) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


DeadLetter = Callable[[Command, str], None]


@dataclass(frozen=True, kw_only=True)
class Parts:
    """Everything the loop is given: built from settings by `wiring.build_parts`, or
    from `pipeline.testing`'s fakes."""

    consumer: Consumer
    outputs: Outputs
    worker: Worker
    client: Client
    dead_letters: DeadLetters
    store: Store | None
    clock: Clock
    prepare: Callable[[], int]  # ready the topics; the input's partition count
    monitor: Callable[[LagView], Service] | None = None
    limit: RateLimit | None = None  # the delivery's share of the group's rate limit


@dataclass(frozen=True)
class LagView:
    """What the lag monitor reads of the loop."""

    assigned: Callable[[], list[int]]
    committed_event_ms: Callable[[int], int | None]
    watch: BrokerWatch
