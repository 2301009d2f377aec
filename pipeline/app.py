"""The run loop: consume -> decode -> normalise -> dedupe, then batch -> deliver -> commit.

Reads as verbs: poll records, process them into partition state, seal a window every
flush interval and hand it to the delivery worker, commit the windows it reports done.
SIGTERM only calls `stop()`; the loop then drains (bounded by
OFSYS_SHUTDOWN_TIMEOUT_S), commits what was delivered, and closes.
"""

from __future__ import annotations

import contextlib
import gc
import time

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from . import logs, topics
from .changelog import Changelog, retention, trigger_settings
from .commit import Offsets, Records, Source
from .config import Settings
from .deadletter import DeadLetters
from .decode import make_decoder
from .dedupe import Command, PartitionState
from .deliver import DeliveryWorker, JourneyClient
from .errors import DecodeError, InvalidEventError, PipelineError
from .lag import LagMonitor
from .metrics import Metrics
from .normalise import Identity, Missing, normalise
from .outputs import Outputs
from .partition import PARTITIONERS
from .schemas import load_family
from .server import Health
from .triggers import trigger_record

log = logs.get("app")
MAX_WINDOW_EVENTS = 100_000  # seal early rather than hold more than this in one window
MAX_OUTSTANDING_WINDOWS = 2  # beyond this, consumption pauses until Journey catches up
FULL_GC_EVERY_SEALS = 120  # a full collection about every two minutes at the default window


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
                    # partition p of the input and of the repartition topic share one state:
                    # the range assignor gives both to the same member
                    "partition.assignment.strategy": "range",
                }
            )
        )
        self._outputs = Outputs(settings)
        self._changelog = Changelog(settings, self._outputs) if settings.changelog else None
        self._retention = retention(settings)
        self._triggers = trigger_settings(settings)
        self._trigger_family = load_family("trigger")
        self._admin = AdminClient(settings.kafka_config())
        self._dead_letters = DeadLetters(self._outputs, settings.dlq_topic, settings.topic, metrics)
        self._client = JourneyClient(
            settings.journey_url, settings.account_key, settings.journey_timeout_s
        )
        self._worker = DeliveryWorker(
            self._client,
            metrics,
            self._dead_letters.command,
            max_commands=settings.batch_max_commands,
            max_bytes=settings.batch_max_bytes,
            max_backoff_s=settings.retry_max_backoff_s,
        )
        self._offsets = Offsets()
        self._partition_of = PARTITIONERS[settings.partitioner]
        self._source_partitions = 0
        self._identity = Identity()
        self._missing: Missing = {}
        self._tally: dict[tuple[str, str], int] = {}
        self._states: dict[int, PartitionState] = {}
        self._stopping = False
        self._paused = False
        self._seals = 0

    def state_snapshot(self) -> dict[int, dict[str, object]]:
        """Each assigned partition's state as plain data (for tests and the benchmark)."""
        return {partition: state.snapshot() for partition, state in self._states.items()}

    def committed(self) -> dict[int, int]:
        """The input topic's offsets this process committed, per partition (a copy)."""
        return {
            p: offset
            for (topic, p), offset in self._offsets.committed.items()
            if topic == self.topic
        }

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to drain and exit; safe from a signal handler."""
        self._stopping = True

    def run(self) -> None:
        settings = self.settings
        source_partitions = topics.partitions(self._admin, self.topic)
        if source_partitions is None:
            log.warning(
                "input topic does not exist yet; waiting for it", extra={"topic": self.topic}
            )
        self._source_partitions = source_partitions or 1
        topics.ensure(self._admin, settings.dlq_topic, self._source_partitions)
        topics.ensure(self._admin, settings.repartition_topic, self._source_partitions)
        topics.ensure(self._admin, settings.triggers_topic, self._source_partitions)
        if self._changelog is not None and source_partitions is not None:
            self._changelog.ensure(self._admin, source_partitions)
        self._consumer.subscribe(
            [self.topic, settings.repartition_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("consuming", extra={"topic": self.topic, "group_id": settings.group_id})
        committed_ms = self._offsets.committed_event_ms
        lag = LagMonitor(
            settings,
            self.metrics,
            lambda: list(self._states),
            lambda partition: committed_ms.get((self.topic, partition)),
        ).start()
        window_s = settings.flush_interval_ms / 1000.0
        seal_at = time.monotonic() + window_s
        try:
            while not self._stopping:
                timeout = min(max(seal_at - time.monotonic(), 0.0), 0.2)
                records = self._consumer.consume(settings.consume_batch, timeout)
                self._polled()
                if records:
                    self._process(records)
                if time.monotonic() >= seal_at or self._offsets.events >= MAX_WINDOW_EVENTS:
                    self._seal()
                    seal_at = time.monotonic() + window_s
                self._commit_delivered()
                self._apply_backpressure()
            self._drain()
        finally:
            lag.stop()
            self._consumer.close()
            self._outputs.flush(5.0)
            self._client.close()

    def _drain(self) -> None:
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        self._seal()
        self._worker.stop(deadline)
        self._worker.join(max(deadline - time.monotonic(), 0.0) + 1.0)
        self._commit_delivered()
        if self._worker.outstanding:
            log.warning(
                "exiting with undelivered windows; their records stay uncommitted",
                extra={"windows": self._worker.outstanding},
            )
        else:
            log.info("drained and committed; exiting")

    # -- the hot path ------------------------------------------------------------------

    def _process(self, records: list[Message]) -> None:
        decode = self._decode
        states = self._states
        positions = self._offsets.positions
        event_ms = self._offsets.event_ms
        tally = self._tally
        identity = self._identity
        missing = self._missing
        max_bytes = self.settings.max_record_bytes
        for msg in records:
            if msg.error() is not None:
                self._consumer_error(msg)
                continue
            partition: int = msg.partition()  # type: ignore[assignment]
            source: Source = (msg.topic(), partition)  # type: ignore[assignment]
            value = msg.value()
            name = "other"
            try:
                if not value:
                    raise DecodeError("empty", "record has no value")
                if len(value) > max_bytes:
                    raise DecodeError("too-large", f"{len(value)} bytes > {max_bytes}")
                event = decode(value)
                event_ms[source] = event["timestamp"]
                change = normalise(event, identity, missing)
                if change is None:
                    outcome = "skipped"
                else:
                    name = event["name"]
                    cart_id = change.cart_id
                    if (
                        cart_id is not None
                        and msg.key() != cart_id.encode()
                        and self._rekey(cart_id, value, partition)
                    ):
                        outcome = "repartitioned"
                    elif states[partition].apply(change):
                        outcome = "processed"
                    else:
                        outcome = "duplicate"
            except (DecodeError, InvalidEventError) as exc:
                self._dead_letters.record(msg, exc.reason, exc.detail)
                outcome = "dead_lettered"
                if type(exc) is InvalidEventError:
                    name = event["name"]
            positions[source] = msg.offset() + 1  # type: ignore[operator]
            key = (name, outcome)
            tally[key] = tally.get(key, 0) + 1
        self._offsets.events += len(records)

    def _rekey(self, cart_id: str, value: bytes, partition: int) -> bool:
        """A record not keyed by its cart id goes, keyed by it, to the repartition topic's
        partition that holds that cart (computed with the producers' partitioner), and is
        processed when it comes back from there: left here it would split the cart's
        state across partitions. False when it already sits on the cart's partition."""
        key = cart_id.encode()
        target = self._partition_of(key, self._source_partitions)
        if target == partition:
            return False
        self._outputs.produce(self.settings.repartition_topic, key, value, partition=target)
        return True

    def _consumer_error(self, msg: Message) -> None:
        error = msg.error()
        assert error is not None
        if error.fatal():
            raise PipelineError(f"Kafka consumer failed: {error.str()}")
        log.warning(
            "consumer error",
            extra={"error": error.str(), "topic": msg.topic(), "partition": msg.partition()},
        )

    # -- seal, deliver, commit -------------------------------------------------------------

    def _seal(self) -> None:
        """Close the window: flush each partition's state into commands (per-event
        commands in event order, then one net change per cart that changed) and hand
        them, with the state changes and the offsets they cover, to the delivery worker."""
        commands: list[Command] = []
        changelog: dict[int, Records] = {}
        fired: list[Command] = []
        wall_ms = int(time.time() * 1000)
        for partition, state in self._states.items():
            fired.extend(state.fire_due(wall_ms if self._caught_up(partition) else state.stream_ms))
            commands.extend(state.flush())
            if self._changelog is not None:
                changelog[partition] = state.changes()
        if commands or self._offsets.events:
            window = self._offsets.seal(commands, changelog)
            window.triggers = fired
            self._worker.submit(window)
        for command in fired:
            self.metrics.triggers.labels(command["args"]["name"]).inc()
        self._publish_tallies()
        self._collect_garbage()

    def _caught_up(self, partition: int) -> bool:
        """Read to the end of this partition of the input and of the repartition topic,
        by the high watermark of the last fetch (a local lookup, no request)."""
        for topic in (self.topic, self.settings.repartition_topic):
            tp = TopicPartition(topic, partition)
            try:
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
                [position] = self._consumer.position([tp])
            except KafkaException:
                return False
            if high > 0 and position.offset < high:
                return False
        return True

    def _collect_garbage(self) -> None:
        """Keep the cyclic GC off the hot path. Partition state is long-lived and acyclic
        (refcounting frees it), yet every young-generation pass would re-scan what a
        window added. Freezing at each seal moves survivors out of the scanned
        generations; an occasional full collection catches any stray cycle."""
        self._seals += 1
        if self._seals % FULL_GC_EVERY_SEALS == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()

    def _commit_delivered(self) -> None:
        """Commit the windows the worker finished. In this order, so a commit never covers
        a command Journey has not accepted or a dead letter the broker has not taken:

        1. the worker delivered every command of the window (accepted or dead-lettered);
        2. produce the window's state changes to the changelog, for the partitions
           still assigned in this assignment generation;
        3. flush the producer (dead letters and changelog): a record the broker refused
           stops the pipeline before anything is committed;
        4. commit, synchronously, the newest offsets the windows cover.

        A crash before step 3 completes restores the state from before the window and
        re-processes its records: the same commands with the same ids, which Journey
        keeps once. A crash between 3 and 4 restores the state from after it: its
        records are then replays and make nothing.
        """
        if self._worker.failure is not None:
            raise PipelineError("delivery failed") from self._worker.failure
        windows = self._offsets.current(self._worker.completed())
        if not windows:
            return
        for window in windows:
            if self._changelog is not None:
                for partition, records in window.changelog.items():
                    if partition in self._states:
                        self._changelog.write(partition, records)
            for command in window.triggers:
                record = trigger_record(command, int(time.time() * 1000))
                self._outputs.produce(
                    self.settings.triggers_topic,
                    command["cartId"] or record["email"],
                    self._trigger_family.encode_single_object(record),
                )
        self._outputs.flush(self.settings.shutdown_timeout_s)
        if self._offsets.commit(self._consumer, windows):
            self.metrics.commits.inc()

    def _apply_backpressure(self) -> None:
        """Pause every assigned partition while Journey retries or windows pile up."""
        worker = self._worker
        self.health.unauthorized = worker.unauthorized
        behind = worker.retrying or worker.outstanding > MAX_OUTSTANDING_WINDOWS
        if behind and not self._paused:
            self._consumer.pause(self._consumer.assignment())
            self._paused = True
            self.metrics.backpressure.set(1)
        elif not behind and self._paused:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False
            self.metrics.backpressure.set(0)

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
        for partition, state in self._states.items():
            metrics.carts.labels(str(partition)).set(len(state.carts))
            metrics.event_ids.labels(str(partition)).set(len(state.seen))

    def _polled(self) -> None:
        self.health.last_poll = time.monotonic()
        self.metrics.last_poll.set(time.time())

    # -- rebalances ----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        if self._paused:
            consumer.pause(partitions)
        self._offsets.generation += 1
        numbers = sorted({tp.partition for tp in partitions} - set(self._states))
        if self._changelog is None:
            self._states.update(
                {p: PartitionState(self._retention, self._triggers) for p in numbers}
            )
        elif numbers:
            self._restore(numbers)
        self._assignment_changed("assigned", partitions)

    def _restore(self, partitions: list[int]) -> None:
        """Rebuild the assigned partitions' state from the changelog before any of their
        records is processed (this runs inside the assignment callback)."""
        assert self._changelog is not None
        self.health.restoring += 1
        started = time.monotonic()
        try:
            self._changelog.ensure(self._admin, topics.partitions(self._admin, self.topic) or 1)
            states, records = self._changelog.restore(partitions)
        finally:
            self.health.restoring -= 1
        self._states.update(states)
        elapsed = time.monotonic() - started
        self.metrics.restore_seconds.observe(elapsed)
        self.metrics.restored_records.inc(records)
        log.info(
            "state restored",
            extra={
                "topic": self._changelog.topic,
                "partitions": partitions,
                "records": records,
                "carts": sum(len(states[p].carts) for p in partitions),
                "seconds": round(elapsed, 3),
            },
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Deliver and commit what the revoked partitions processed before letting go."""
        self._seal()
        if not self._worker.wait_idle(self.settings.shutdown_timeout_s):
            log.warning(
                "Journey did not accept in time; revoked partitions' last records "
                "stay uncommitted and their new owner processes them again"
            )
        self._commit_delivered()
        self._release(partitions)
        self._assignment_changed("revoked", partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release(partitions)
        self._assignment_changed("lost", partitions)

    def _release(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._states.pop(tp.partition, None)
            self._offsets.forget((tp.topic, tp.partition))
            label = str(tp.partition)
            for gauge in (self.metrics.carts, self.metrics.event_ids):
                with contextlib.suppress(KeyError):
                    gauge.remove(label)

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
        if assigned == 0:
            log.info("no partitions assigned: idle, ready to take over on the next rebalance")
