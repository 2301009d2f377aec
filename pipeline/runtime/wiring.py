"""Wiring: the one place the real clients are built and the pipeline is put together.

Owns the construction of confluent-kafka's Consumer, Producer (`Outputs`) and
AdminClient, the Journey client and its delivery worker, the changelog store, the lag
monitor and the system clock, and the one rule for the readiness probe's poll
staleness. Invariant: `ofsys-pipeline run`, the demo and the benchmarks all build the
pipeline through `build_pipeline`, so they run the same thing; the loop never
constructs a client itself.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient

from .. import logs
from ..config import Settings
from ..config_kafka import FETCH_QUEUE_BACKOFF_MS
from ..errors import ConfigError, PipelineError
from ..journey.client import JourneyClient
from ..journey.ratelimit import from_limits
from ..journey.worker import DeliveryWorker
from ..metrics import Metrics
from ..server import Health
from ..state.partition import RECORD_BUDGET
from . import topics
from .changelog import Changelog
from .deadletter import DeadLetters
from .lag import LagMonitor
from .loop import Pipeline
from .outputs import Outputs
from .ports import LagView, Parts, Service, SystemClock

log = logs.get("app")
FETCH_QUEUE_KBYTES = 16 << 10  # the consumer's prefetch queue, bounded in bytes
MIN_POLL_STALE_S = 10.0
# librdkafka's default is 500 ms. A broker that answers a fetch only at its longest wait
# (Tansu does, on a partition with no new data) would hold records that long before the
# window they belong to sees them: 100 ms keeps that well inside the end-to-end latency
# budget (flush interval + 300 ms) for a few idle fetches a second.
FETCH_WAIT_MAX_MS = 100
# librdkafka's default is 1 MiB per partition per fetch: fewer, larger fetches keep the
# loop fed. With the queue's backoff at FETCH_QUEUE_BACKOFF_MS, 4 MiB ran 36,486-41,019
# events/s and 1 MiB 34,387-36,916 on the process bench, six runs each, alternated
# (docs/benchmarks.md, 2026-12-05, AB); the prefetch queue still bounds the memory
# (FETCH_QUEUE_KBYTES, exceeded by at most one fetch).
MAX_PARTITION_FETCH_BYTES = 4 << 20


def poll_stale_s(settings: Settings) -> float:
    """/readyz fails when the loop has not polled for this long: three windows, at
    least MIN_POLL_STALE_S (a seal or a commit may take a few seconds)."""
    return max(MIN_POLL_STALE_S, 3 * settings.flush_interval_ms / 1000.0)


def build_pipeline(
    settings: Settings, metrics: Metrics | None = None
) -> tuple[Pipeline, Metrics, Health]:
    """The pipeline with its metrics and health, on the real clients. A configuration
    librdkafka refuses (an OFSYS_KAFKA_* property) raises ConfigError."""
    metrics = metrics or Metrics()
    health = Health(poll_stale_s=poll_stale_s(settings))
    try:
        parts = build_parts(settings, metrics)
    except KafkaException as exc:
        raise ConfigError(f"Kafka configuration: {exc.args[0].str()}") from exc
    return Pipeline(settings, metrics, health, parts), metrics, health


def consumer_config(settings: Settings) -> dict[str, Any]:
    """The input consumer's librdkafka settings: the operator's, then the guarantees."""
    config = settings.kafka_config(
        "consumer",
        **{
            "group.id": settings.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "client.id": "ofsys-pipeline",
            # partition p of the input and of the repartition topic share one state:
            # the range assignor gives both to the same member
            "partition.assignment.strategy": "range",
            # the prefetch queue is bounded in bytes, whatever the backlog
            "queued.max.messages.kbytes": FETCH_QUEUE_KBYTES,
            "queued.min.messages": 20_000,
        },
    )
    # defaults, not guarantees: OFSYS_KAFKA_CONSUMER_FETCH_WAIT_MAX_MS (and
    # _MAX_PARTITION_FETCH_BYTES, _FETCH_QUEUE_BACKOFF_MS) still win
    config.setdefault("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
    config.setdefault("max.partition.fetch.bytes", MAX_PARTITION_FETCH_BYTES)
    config.setdefault("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
    return config


def build_parts(settings: Settings, metrics: Metrics) -> Parts:
    consumer = Consumer(consumer_config(settings))
    outputs = Outputs(settings)
    admin = AdminClient(settings.kafka_config("admin"))
    store = Changelog(settings, outputs, admin) if settings.changelog else None
    dead_letters = DeadLetters(outputs, settings.dlq_topic, settings.topic, metrics)
    outputs.on_refused(
        settings.repartition_topic,
        lambda record, error: dead_letters.refused(record, "repartition-refused", error.str()),
    )
    client = JourneyClient(
        settings.journey_url,
        settings.account_key,
        settings.journey_timeout_s,
        connections=settings.journey_max_in_flight,
    )
    limit = from_limits(settings.journey_max_requests_per_s, settings.journey_max_commands_per_s)
    worker = DeliveryWorker(
        client,
        metrics,
        dead_letters.command,
        max_commands=settings.batch_max_commands,
        max_bytes=settings.batch_max_bytes,
        max_backoff_s=settings.retry_max_backoff_s,
        lanes=settings.journey_max_in_flight,
        limit=limit,
    )

    def monitor(view: LagView) -> Service:
        return LagMonitor(
            settings, metrics, view.assigned, view.committed_event_ms, watch=view.watch
        ).start()

    return Parts(
        consumer=consumer,
        outputs=outputs,
        worker=worker,
        client=client,
        dead_letters=dead_letters,
        store=store,
        clock=SystemClock(),
        prepare=lambda: prepare_topics(settings, admin, outputs, store),
        monitor=monitor,
        limit=limit,
    )


def prepare_topics(
    settings: Settings, admin: AdminClient, outputs: Outputs, store: Changelog | None
) -> int:
    """Find the input; create the outputs (dead letters and re-keyed records take a
    record of up to OFSYS_MAX_RECORD_BYTES with its headers); read every output topic's
    size limit, which what the pipeline writes stays under. The input's partition count
    (1 while it does not exist yet)."""
    source_partitions = topics.partitions(admin, settings.topic)
    if source_partitions is None:
        log.warning(
            "input topic does not exist yet; waiting for it", extra={"topic": settings.topic}
        )
    count = source_partitions or 1
    roomy = {"max.message.bytes": str(max(settings.max_record_bytes + 65_536, 1_048_588))}
    dlq = {**roomy, "retention.ms": str(settings.dlq_retention_ms)}  # it holds personal data
    topics.ensure(admin, settings.dlq_topic, count, dlq)
    topics.ensure(admin, settings.repartition_topic, count, roomy)
    topics.ensure(admin, settings.triggers_topic, count)
    topics.ensure(admin, settings.control_topic, count)  # forget requests (control.py)
    written = [settings.dlq_topic, settings.repartition_topic, settings.triggers_topic]
    if store is not None and source_partitions is not None:
        store.ensure(admin, source_partitions)
    if store is not None:
        written.append(store.topic)
    outputs.read_limits(admin, written)
    if store is not None and outputs.limit(store.topic) < RECORD_BUDGET + 1024:
        raise PipelineError(
            f"changelog topic {store.topic} takes records of at most "
            f"{outputs.limit(store.topic)} bytes; the pipeline writes "
            f"up to {RECORD_BUDGET + 1024}: raise its max.message.bytes"
        )
    return count
