"""The pipeline's one producer: dead letters, changelog records, seal marks, re-keyed
records and triggers, produced asynchronously and made durable together before each
offset commit.

Two promises. Every record fits: `limit(topic)` is the largest record the producer and
the topic accept (read once from the broker), and callers size what they write by it.
And a record the broker refuses never stops the pipeline by itself: a refusal calls the
topic's `on_refused` handler (dead letters are re-sent without their value); only a
topic without one (changelog, triggers) fails the next `flush`, before any commit.

While the broker cannot be reached, records wait in librdkafka's queue (their timeout
is longer than the outage the pipeline rides out) and `flush` reports them pending
instead of failing: the loop keeps the windows they belong to uncommitted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
)

from .. import logs
from ..config import Settings
from ..errors import PipelineError

log = logs.get("outputs")

Headers = list[tuple[str, Any]]


class Record(Protocol):
    """What a refusal handler reads of a record (a Message, or one refused unsent)."""

    def topic(self) -> str | None: ...
    def key(self) -> Any: ...
    def value(self) -> Any: ...
    def partition(self) -> int | None: ...
    def headers(self) -> Any: ...


Refused = Callable[[Record, KafkaError], None]
DEFAULT_TOPIC_LIMIT = 1_000_000  # Kafka's message.max.bytes is 1,048,588; stay below it
RECORD_OVERHEAD = 512  # record framing, timestamps and header names, generously
PRODUCER_MAX_BYTES = 16 << 20  # the producer's own cap; topics set the real limit


class Outputs:
    def __init__(self, settings: Settings) -> None:
        self._producer = Producer(
            settings.kafka_config(
                "producer",
                **{
                    "acks": "all",
                    "linger.ms": 50,
                    "client.id": "ofsys-pipeline-out",
                    # ordered per partition through retries: the changelog is compacted,
                    # so a retried older record must never land after a newer one
                    "enable.idempotence": True,
                    "message.max.bytes": PRODUCER_MAX_BYTES,
                    # records wait out a broker outage; the loop decides when to give up
                    "message.timeout.ms": int((settings.broker_outage_s + 60) * 1000),
                    # reports only for what failed: a window's thousands of changelog
                    # records no longer call back into Python once each (the GIL's)
                    "delivery.report.only.error": True,
                },
            )
        )
        self._limits: dict[str, int] = {}
        self._on_refused: dict[str, Refused] = {}
        self._failed: list[str] = []

    # -- limits ------------------------------------------------------------------------

    def read_limits(self, admin: AdminClient, topics: list[str]) -> None:
        """Each topic's `max.message.bytes` as the broker reports it (the topic's own
        setting, else the broker's default); Kafka's default where it cannot say."""
        resources = [ConfigResource(ConfigResource.Type.TOPIC, topic) for topic in topics]
        futures = admin.describe_configs(resources)
        for resource, future in futures.items():
            limit = DEFAULT_TOPIC_LIMIT
            try:
                entry = future.result(10).get("max.message.bytes")
                if entry is not None and entry.value:
                    limit = int(entry.value)
            except (KafkaException, ValueError) as exc:
                log.warning(
                    "cannot read the topic's max.message.bytes; assuming Kafka's default",
                    extra={"topic": resource.name, "error": str(exc), "bytes": limit},
                )
            self._limits[resource.name] = min(limit, PRODUCER_MAX_BYTES)

    def limit(self, topic: str) -> int:
        """The largest key + value + headers a record to `topic` may carry."""
        return self._limits.get(topic, DEFAULT_TOPIC_LIMIT) - RECORD_OVERHEAD

    def on_refused(self, topic: str, handler: Refused) -> None:
        """Route refusals of records to `topic` to `handler` instead of failing."""
        self._on_refused[topic] = handler

    # -- producing ---------------------------------------------------------------------

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        handler = self._on_refused.get(msg.topic() or "")
        if handler is not None:
            handler(msg, err)
        else:
            self._failed.append(f"{msg.topic()}: {err.str()}")

    def produce(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        partition: int = -1,
        headers: Headers | None = None,
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    partition=partition,
                    headers=headers,
                    on_delivery=self._on_delivery,
                )
                return
            except BufferError:  # local queue full: let the broker catch up
                self._producer.poll(0.1)
            except KafkaException as exc:  # refused before it left (too large, …)
                error: KafkaError = exc.args[0]
                handler = self._on_refused.get(topic)
                if handler is None:
                    raise PipelineError(f"{topic} refused a record: {error.str()}") from exc
                handler(_Unsent(topic, key, value, partition, headers), error)
                return

    def produce_many(
        self, topic: str, records: list[tuple[bytes, bytes | None]], partition: int
    ) -> None:
        """`produce` for each (key, value) to one partition, in order, in one call (a
        window's changelog records); a record the fast path cannot take goes through
        `produce`, which waits for room or routes the refusal."""
        produce, on_delivery = self._producer.produce, self._on_delivery
        for key, value in records:
            try:
                # positional, in produce()'s documented order (topic, value, key,
                # partition, on_delivery): keywords are matched by name on every call,
                # about one record per event (docs/benchmarks.md, 2026-12-07 afternoon)
                produce(topic, value, key, partition, on_delivery)
            except (BufferError, KafkaException):
                self.produce(topic, key, value, partition)

    def flush(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for the broker to take every record; the number still
        pending (0: all durable). A record refused without a handler raises, so nothing
        that depends on it (an offset commit) goes ahead."""
        remaining: int = self._producer.flush(timeout_s)
        if self._failed:
            detail = self._failed[0]
            self._failed.clear()
            raise PipelineError(f"the broker did not take the pipeline's records: {detail}")
        return remaining

    def poll(self) -> None:
        """Serve delivery reports without waiting."""
        self._producer.poll(0)


class _Unsent:
    """A record refused at `produce()`, shaped like the Message a delivery report has."""

    __slots__ = ("_headers", "_key", "_partition", "_topic", "_value")

    def __init__(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        partition: int,
        headers: Headers | None,
    ) -> None:
        self._topic, self._key, self._value = topic, key, value
        self._partition, self._headers = partition, headers

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key.encode() if isinstance(self._key, str) else self._key

    def value(self) -> bytes | None:
        return self._value

    def partition(self) -> int:
        return self._partition

    def headers(self) -> Headers | None:
        return self._headers
