"""Reading without a trace: a time range of one topic-partition, and a partition's state
as of a time from the changelog.

Every consumer here is `assign()`ed under a throwaway group id (`<group>.inspect-<hex>`)
with auto-commit off: it never joins the pipeline's group, never commits, and the group's
offsets and the changelog are never written.

The range's start is found with `offsets_for_times`; every record is also checked
against the range by its timestamp, and a partition is read to its end (partition EOF)
unless `offsets_for_times` gave an end past the start. So a broker whose
`offsets_for_times` answers the first offset whatever the time (Tansu 0.6 does) gives
the same answer, only more slowly.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from ..config import Settings
from ..errors import ConfigError, PipelineError
from ..runtime import topics
from ..runtime.changelog import retention, trigger_settings
from ..state.partition import PartitionState
from .timerange import TimeRange, iso

QUIET_S = 30.0  # no record and no end of partition for this long: the broker is not answering


def _consumer(settings: Settings) -> Any:
    """A consumer that never joins the group nor commits (assign only)."""
    try:
        return Consumer(
            settings.kafka_config(
                "consumer",
                **{
                    "group.id": f"{settings.group_id}.inspect-{uuid.uuid4().hex[:12]}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    "client.id": "ofsys-pipeline-inspect",
                    "fetch.wait.max.ms": 10,  # the end of a partition is found sooner
                },
            )
        )
    except KafkaException as exc:
        raise ConfigError(f"Kafka configuration: {exc.args[0].str()}") from exc


def _offset_at(consumer: Any, topic: str, partition: int, ms: int) -> int:
    """The first offset at or after `ms`, -1 when no record is that late."""
    found = consumer.offsets_for_times([TopicPartition(topic, partition, ms)], timeout=10)
    offset: int = found[0].offset
    return offset


def _records(consumer: Any, topic: str) -> Iterator[Any]:
    """The assigned partition's records to its end (partition EOF); errors raise."""
    last = time.monotonic()
    while True:
        messages = consumer.consume(1000, 0.05)  # returns early only when 1000 are in
        if messages:
            last = time.monotonic()
        elif time.monotonic() - last > QUIET_S:
            raise PipelineError(f"reading {topic}: no answer from Kafka for {QUIET_S:.0f} s")
        for msg in messages:
            error = msg.error()
            if error is None:
                yield msg
            elif error.code() == KafkaError._PARTITION_EOF:
                return
            else:
                raise PipelineError(f"reading {topic}: {error.str()}")


def read_range(settings: Settings, topic: str, partition: int, span: TimeRange) -> Iterator[Any]:
    """The records of one topic-partition whose timestamps fall in `span`, in offset order."""
    consumer = _consumer(settings)
    try:
        start = OFFSET_BEGINNING
        if span.from_ms is not None:
            start = _offset_at(consumer, topic, partition, span.from_ms)
            if start < 0:
                return  # no record that late
        end = -1
        if span.to_ms is not None:
            end = _offset_at(consumer, topic, partition, span.to_ms + 1)
            if end <= max(start, 0):
                end = -1  # none past the range, or a broker that answers the first offset
        consumer.assign([TopicPartition(topic, partition, start)])
        for msg in _records(consumer, topic):
            if 0 <= end <= msg.offset():
                return
            if msg.timestamp()[1] in span:
                yield msg
    finally:
        consumer.close()


def state_as_of(
    settings: Settings, partition: int, from_ms: int | None, changelog: bool
) -> tuple[PartitionState, str]:
    """The partition's state from its changelog records produced before `from_ms` (the
    last windows committed before the range starts), and a line saying where it came
    from. Empty when the range is open at the start or there is no changelog."""
    state = PartitionState(retention(settings), trigger_settings(settings))
    topic = settings.changelog_topic
    if from_ms is None:
        return state, "empty (the range starts at the beginning of the topic)"
    if not changelog:
        return state, f"empty (no changelog topic {topic})"
    consumer = _consumer(settings)
    loaded = 0
    try:
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        for msg in _records(consumer, topic):
            if msg.timestamp()[1] >= from_ms:
                break  # one producer per partition at a time: timestamps only grow
            state.load(msg.key() or b"", msg.value())
            loaded += 1
    finally:
        consumer.close()
    state.restored()
    if not loaded:
        return state, f"empty (nothing in {topic}[{partition}] before {iso(from_ms)})"
    return state, f"from {topic}[{partition}] as of {iso(from_ms)} ({loaded} records)"


def partition_records(
    settings: Settings, partition: int, span: TimeRange, repartition: bool
) -> Iterator[Any]:
    """Input partition `partition` in `span`, and, when `repartition`, the same partition
    of the repartition topic (records the pipeline re-keyed to it), merged by timestamp:
    each topic in offset order, as the pipeline consumes them."""
    found = read_range(settings, settings.topic, partition, span)
    if not repartition:
        return found
    rekeyed = read_range(settings, settings.repartition_topic, partition, span)
    return heapq.merge(found, rekeyed, key=lambda msg: msg.timestamp()[1])


class Layout(NamedTuple):
    """The input's partition count, and which of the pipeline's own topics exist (the
    changelog only counts when OFSYS_CHANGELOG is on, as for the pipeline)."""

    partitions: int
    changelog: bool
    repartition: bool


def layout(settings: Settings) -> Layout:
    """Looked up, never created: a missing input topic is a ConfigError."""
    try:
        admin = AdminClient(settings.kafka_config("admin"))
    except KafkaException as exc:
        raise ConfigError(f"Kafka configuration: {exc.args[0].str()}") from exc
    count = topics.partitions(admin, settings.topic)
    if count is None:
        raise ConfigError(f"topic {settings.topic} does not exist")
    return Layout(
        count,
        settings.changelog and topics.partitions(admin, settings.changelog_topic) is not None,
        topics.partitions(admin, settings.repartition_topic) is not None,
    )
