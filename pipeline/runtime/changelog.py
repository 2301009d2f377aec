"""The state changelog: a compacted topic, partitioned like the input, that makes each
partition's state survive crashes, restarts and rebalances.

Written in step with offsets: a window's state changes are produced only after Journey
accepted the window's commands, and flushed before its offsets are committed. So after
a crash the restored state is either from before a window (its records are processed
again and make the same commands with the same ids) or from after it (its records are
replays and make nothing): never a lost or a doubled command.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from .. import logs
from ..config import Settings
from ..config_kafka import FETCH_QUEUE_BACKOFF_MS
from ..errors import PipelineError, RestoreInterruptedError
from ..state.partition import PartitionState, Retention
from ..state.triggers import TriggerSettings
from . import topics
from .ports import Outputs

log = logs.get("changelog")


def trigger_settings(settings: Settings) -> TriggerSettings:
    return TriggerSettings(
        settings.abandoned_cart_after_s * 1000,
        settings.abandoned_cart_grace_s * 1000,
        settings.browse_abandoned_after_s * 1000,
    )


def retention(settings: Settings) -> Retention:
    return Retention(
        settings.retention_carts_s * 1000,
        settings.retention_event_ids_s * 1000,
        settings.retention_orders_s * 1000,
    )


class Changelog:
    def __init__(
        self, settings: Settings, outputs: Outputs, admin: AdminClient | None = None
    ) -> None:
        self.topic = settings.changelog_topic
        self._settings = settings
        self._outputs = outputs
        self._admin = admin  # given: each restore first makes sure the topic is right

    def ensure(self, admin: AdminClient, partitions: int) -> None:
        topics.ensure(admin, self.topic, partitions, {"cleanup.policy": "compact"})
        found = topics.partitions(admin, self.topic)
        if found != partitions:
            raise PipelineError(
                f"changelog topic {self.topic} has {found} partitions, the input {partitions}: "
                "they must match (see docs/deploy.md on adding partitions)"
            )

    def write(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        self._outputs.produce_many(self.topic, records, partition)

    def restore(
        self, partitions: list[int], stopping: Callable[[], bool]
    ) -> tuple[dict[int, PartitionState], int]:
        """Each partition's state, rebuilt from its changelog partition up to its end;
        abandoned (RestoreInterruptedError) as soon as `stopping()` says so."""
        if self._admin is not None:
            self.ensure(self._admin, topics.partitions(self._admin, self._settings.topic) or 1)
        states = {
            p: PartitionState(retention(self._settings), trigger_settings(self._settings))
            for p in partitions
        }
        consumer = Consumer(
            self._settings.kafka_config(
                "consumer",
                **{
                    "group.id": f"{self._settings.group_id}.restore",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "client.id": "ofsys-pipeline-restore",
                    # restore reads whole partitions: large fetches, fewer round trips, and
                    # a prefetch queue bounded in bytes (memory does not follow the topic);
                    # with librdkafka's default floor of 100,000 queued messages the fetcher
                    # idles between fetches and a restore waits on it (a raw read of one
                    # partition ran at half the speed): the byte bound decides instead, at
                    # 32 MiB (64 restored no faster and raised the restore's peak RSS:
                    # docs/benchmarks.md, 2026-12-03 afternoon, R5 and R8)
                    "max.partition.fetch.bytes": 8 << 20,
                    "fetch.max.bytes": 32 << 20,
                    "queued.max.messages.kbytes": 32 << 10,
                    "queued.min.messages": 10_000_000,
                    "fetch.wait.max.ms": 10,
                    # a full queue postpones a fetch 1 s by default (config_kafka.py)
                    "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
                },
            )
        )
        records = 0
        try:
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
            remaining = set(partitions)
            deadline = time.monotonic() + 600
            while remaining:
                if stopping():
                    raise RestoreInterruptedError(f"restoring {self.topic}: stopping")
                if time.monotonic() > deadline:
                    raise PipelineError(f"restoring {self.topic} took more than 600 s")
                for msg in consumer.consume(10_000, 0.1):
                    error = msg.error()
                    partition: int = msg.partition()  # type: ignore[assignment]
                    if error is None:
                        states[partition].load(msg.key() or b"", msg.value())
                        records += 1
                    elif error.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(partition)
                    elif error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                        raise PipelineError(f"restoring {self.topic}: {error.str()}")
        finally:
            consumer.close()
        for state in states.values():
            state.restored()
        return states, records
