"""The run loop: consume -> decode -> normalise -> dedupe, then batch -> deliver -> commit.

Reads as verbs: poll records, process them into partition state, and every flush
window `checkpoint()` delivers and commits. SIGTERM only calls `stop()`; the loop then
drains (a last checkpoint, bounded by OFSYS_SHUTDOWN_TIMEOUT_S) and closes.
"""

from __future__ import annotations

import contextlib
import time

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from . import logs, topics
from .batch import batches
from .config import Settings
from .deadletter import DeadLetters
from .decode import make_decoder
from .dedupe import Command, PartitionState
from .deliver import Delivery, JourneyClient
from .errors import DecodeError, InvalidEventError, PipelineError
from .metrics import Metrics
from .normalise import Identity, Missing, normalise
from .schemas import load_family
from .server import Health

log = logs.get("app")
LAG_REFRESH_S = 5.0
MAX_PENDING_EVENTS = 200_000  # checkpoint early rather than hold more than this in memory


class DrainTimeoutError(PipelineError):
    """The shutdown deadline passed before the last window was delivered."""


class Pipeline:
    def __init__(self, settings: Settings, metrics: Metrics, health: Health) -> None:
        self.settings = settings
        self.metrics = metrics
        self.health = health
        self.topic = settings.topic
        self._decode = make_decoder(load_family("site_event"), settings.schema_registry_url)
        self._consumer = Consumer(
            settings.kafka_config(
                **{
                    "group.id": settings.group_id,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    "client.id": "ofsys-pipeline",
                }
            )
        )
        self._producer = Producer(
            settings.kafka_config(
                **{"acks": "all", "linger.ms": 5, "client.id": "ofsys-pipeline-dlq"}
            )
        )
        self._admin = AdminClient(settings.kafka_config())
        self._dead_letters = DeadLetters(
            self._producer, settings.dlq_topic, settings.topic, metrics
        )
        self._client = JourneyClient(
            settings.journey_url, settings.account_key, settings.journey_timeout_s
        )
        self._delivery = Delivery(
            self._client,
            metrics,
            max_backoff_s=settings.retry_max_backoff_s,
            wait=self._wait,
            dead_letter=self._dead_letters.command,
        )
        self._identity = Identity()
        self._missing: Missing = {}
        self._tally: dict[tuple[str, str], int] = {}
        self._states: dict[int, PartitionState] = {}
        self._positions: dict[int, int] = {}  # next offset to commit, per partition
        self._event_ts: dict[int, int] = {}  # event time of the record before that offset
        self._committed: dict[int, int] = {}
        self._committed_ts: dict[int, int] = {}
        self._pending_events = 0
        self._stopping = False
        self._drain_deadline = float("inf")
        self._in_checkpoint = False
        self._paused = False
        self._next_lag_refresh = 0.0
        self._lag_labels: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to drain and exit; safe from a signal handler."""
        if not self._stopping:
            self._stopping = True
            self._drain_deadline = time.monotonic() + self.settings.shutdown_timeout_s

    def run(self) -> None:
        source_partitions = topics.partitions(self._admin, self.topic)
        if source_partitions is None:
            log.warning(
                "input topic does not exist yet; waiting for it", extra={"topic": self.topic}
            )
        topics.ensure(self._admin, self.settings.dlq_topic, source_partitions or 1)
        self._consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info(
            "consuming",
            extra={
                "topic": self.topic,
                "group_id": self.settings.group_id,
                "journey_url": self.settings.journey_url,
            },
        )
        window = self.settings.flush_interval_ms / 1000.0
        deadline = time.monotonic() + window
        try:
            while not self._stopping:
                timeout = min(max(deadline - time.monotonic(), 0.0), 0.5)
                records = self._consumer.consume(self.settings.consume_batch, timeout)
                self._polled()
                if records:
                    self._process(records)
                now = time.monotonic()
                if now >= deadline or self._pending_events >= MAX_PENDING_EVENTS:
                    self.checkpoint()
                    deadline = time.monotonic() + window
                if now >= self._next_lag_refresh:
                    self._refresh_lag()
                    self._next_lag_refresh = now + LAG_REFRESH_S
            self._drain()
        finally:
            self._consumer.close()
            self._producer.flush(5.0)
            self._client.close()

    def _drain(self) -> None:
        try:
            self.checkpoint()
            log.info("drained and committed; exiting")
        except DrainTimeoutError:
            log.warning(
                "shutdown deadline passed before Journey accepted the last window; "
                "its records stay uncommitted and will be processed again",
                extra={"uncommitted_events": self._pending_events},
            )

    # -- the hot path ------------------------------------------------------------------

    def _process(self, records: list[Message]) -> None:
        decode = self._decode
        states = self._states
        positions = self._positions
        event_ts = self._event_ts
        tally = self._tally
        identity = self._identity
        missing = self._missing
        max_bytes = self.settings.max_record_bytes
        for msg in records:
            if msg.error() is not None:
                self._consumer_error(msg)
                continue
            partition: int = msg.partition()  # type: ignore[assignment]
            value = msg.value()
            name = "other"
            try:
                if not value:
                    raise DecodeError("empty", "record has no value")
                if len(value) > max_bytes:
                    raise DecodeError("too-large", f"{len(value)} bytes > {max_bytes}")
                event = decode(value)
                change = normalise(event, identity, missing)
                event_ts[partition] = event["timestamp"]
                if change is None:
                    outcome = "skipped"
                else:
                    name = event["name"]
                    outcome = "processed" if states[partition].apply(change) else "duplicate"
            except (DecodeError, InvalidEventError) as exc:
                self._dead_letters.record(msg, exc.reason, exc.detail)
                outcome = "dead_lettered"
                if type(exc) is InvalidEventError:
                    name = event["name"]
            positions[partition] = msg.offset() + 1  # type: ignore[operator]
            key = (name, outcome)
            tally[key] = tally.get(key, 0) + 1
        self._pending_events += len(records)

    def _consumer_error(self, msg: Message) -> None:
        error = msg.error()
        assert error is not None
        if error.fatal():
            raise PipelineError(f"Kafka consumer failed: {error.str()}")
        log.warning(
            "consumer error",
            extra={"error": error.str(), "topic": msg.topic(), "partition": msg.partition()},
        )

    # -- checkpoint: deliver, then commit ----------------------------------------------

    def checkpoint(self) -> None:
        """Deliver everything processed so far, then commit it. In this order:

        1. Flush each partition's state into commands: per-event commands in event
           order, then one net change per cart that changed in the window.
        2. Split them into batches and deliver each to Journey, retrying until accepted
           (consumption paused meanwhile); rejected commands are dead-lettered.
        3. Flush the dead-letter producer: a dead letter the broker refused stops the
           pipeline before anything is committed.
        4. Commit, synchronously, the next offsets of the partitions still assigned.

        A crash anywhere before step 4 re-processes the window: command ids and batch
        ids are deterministic, so Journey's idempotency keeps one copy.
        """
        self._in_checkpoint = True
        try:
            commands: list[Command] = []
            for state in self._states.values():
                commands.extend(state.flush())
            settings = self.settings
            for batch in batches(commands, settings.batch_max_commands, settings.batch_max_bytes):
                self._delivery.deliver(batch)
            self._resume()
            self._dead_letters.flush(settings.shutdown_timeout_s)
            self._commit()
            self._pending_events = 0
            self._publish_tallies()
        finally:
            self._in_checkpoint = False

    def _commit(self) -> None:
        offsets = [
            TopicPartition(self.topic, partition, offset)
            for partition, offset in self._positions.items()
            if self._committed.get(partition) != offset
        ]
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # The records stay uncommitted and are delivered again (same ids): safe.
            log.warning("offset commit failed", extra={"error": str(exc.args[0])})
            return
        self.metrics.commits.inc()
        for tp in offsets:
            self._committed[tp.partition] = tp.offset
            self._committed_ts[tp.partition] = self._event_ts.get(tp.partition, 0)

    def _publish_tallies(self) -> None:
        metrics = self.metrics
        for (name, outcome), count in self._tally.items():
            metrics.events.labels(name, outcome).inc(count)
        self._tally.clear()
        for (name, field), count in self._missing.items():
            metrics.missing_fields.labels(name, field).inc(count)
        self._missing.clear()
        if self._identity.invalid:
            metrics.invalid_emails.inc(self._identity.invalid)
            self._identity.invalid = 0
        metrics.carts.set(sum(len(state.carts) for state in self._states.values()))

    # -- backpressure: wait while keeping the group membership --------------------------

    def _wait(self, seconds: float) -> None:
        if not self._paused:
            self._consumer.pause(self._consumer.assignment())
            self._paused = True
            self.metrics.backpressure.set(1)
        self.health.unauthorized = self._delivery.unauthorized
        end = time.monotonic() + seconds
        while (remaining := end - time.monotonic()) > 0:
            if self._stopping and time.monotonic() > self._drain_deadline:
                raise DrainTimeoutError("shutdown deadline passed while delivering")
            msg = self._consumer.poll(min(remaining, 0.2))
            self._polled()
            if msg is not None and msg.error() is None:
                # Only a partition assigned mid-wait can yield one: leave it for later.
                self._consumer.seek(
                    TopicPartition(self.topic, msg.partition() or 0, msg.offset() or 0)
                )
        if time.monotonic() >= self._next_lag_refresh:
            self._refresh_lag()
            self._next_lag_refresh = time.monotonic() + LAG_REFRESH_S

    def _resume(self) -> None:
        self.health.unauthorized = self._delivery.unauthorized
        if self._paused:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False
            self.metrics.backpressure.set(0)

    def _polled(self) -> None:
        self.health.last_poll = time.monotonic()
        self.metrics.last_poll.set(time.time())

    # -- rebalances ----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        if self._paused:
            consumer.pause(partitions)
        for tp in partitions:
            self._states[tp.partition] = PartitionState()
        self._assignment_changed("assigned", partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not self._in_checkpoint:
            with contextlib.suppress(DrainTimeoutError):
                self.checkpoint()
        self._release(partitions)
        self._assignment_changed("revoked", partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release(partitions)
        self._assignment_changed("lost", partitions)

    def _release(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            for table in (
                self._states,
                self._positions,
                self._committed,
                self._event_ts,
                self._committed_ts,
            ):
                table.pop(tp.partition, None)
            label = str(tp.partition)
            if label in self._lag_labels:
                self._lag_labels.discard(label)
                self.metrics.lag_messages.remove(label)
                self.metrics.lag_seconds.remove(label)

    def _assignment_changed(self, kind: str, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels(kind).inc()
        assigned = len(self._states)
        self.metrics.assigned.set(assigned)
        self.health.assigned = assigned
        log.info(
            f"partitions {kind}",
            extra={
                "topic": self.topic,
                "partitions": sorted(tp.partition for tp in partitions),
                "assigned": sorted(self._states),
            },
        )
        if kind != "assigned" and assigned == 0:
            log.info("no partitions assigned: idle, ready to take over on the next rebalance")

    # -- lag -----------------------------------------------------------------------------

    def _refresh_lag(self) -> None:
        """Lag from the broker's high watermark against what this process committed."""
        now_ms = time.time() * 1000.0
        for partition in list(self._states):
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=1.0, cached=False
                )
            except KafkaException:
                continue
            committed = self._committed.get(partition)
            if committed is None:
                committed = self._initial_committed(partition)
            lag = max(high - committed, 0)
            label = str(partition)
            self._lag_labels.add(label)
            self.metrics.lag_messages.labels(label).set(lag)
            ts = self._committed_ts.get(partition)
            self.metrics.lag_seconds.labels(label).set(
                0.0 if lag == 0 or not ts else max(now_ms - ts, 0.0) / 1000.0
            )

    def _initial_committed(self, partition: int) -> int:
        try:
            [tp] = self._consumer.committed([TopicPartition(self.topic, partition)], timeout=2.0)
        except KafkaException:
            return 0
        offset = tp.offset if tp.offset >= 0 else 0
        self._committed[partition] = offset
        return offset
