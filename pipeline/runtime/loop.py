"""The run loop: consume -> decode -> normalise -> dedupe, then batch -> deliver -> commit.

Reads as verbs: poll records, process them into partition state, seal a window every
flush interval (or sooner when it holds MAX_WINDOW_EVENTS events or MAX_WINDOW_COMMANDS
pending commands) and hand it to the delivery worker, commit the windows it reports
done. SIGTERM only calls `stop()`; the loop then drains (bounded by
OFSYS_SHUTDOWN_TIMEOUT_S), commits what was delivered, and closes.

Windows close where they closed before. A net cart change depends on where its window
closed, so each close is a seal mark, `[input offset, repartition offset]` per
partition, written to the changelog and flushed before the window's commands go to
Journey. After a crash, restart or rebalance the partition's new owner restores the
marks with the state and, while any lies ahead, closes the partition's windows exactly
there (a record past a mark waits, its partition paused and sought back, until the
other topic reaches the mark too). So a replay re-sends the same commands under the
same ids, which Journey keeps once, and never the same id with other content.

A broker that stops answering is ridden out: records and windows wait, uncommitted,
consumption pauses, /readyz says why, and the loop goes on when the broker is back; it
exits only after OFSYS_BROKER_OUTAGE_S.
"""

from __future__ import annotations

import contextlib
import gc
import time

import orjson
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from .. import logs
from ..config import Settings
from ..errors import BrokerOutageError, DecodeError, InvalidEventError, PipelineError
from ..journey.delivery import DeliveryWorker, JourneyClient
from ..metrics import EVENT_LABELS, Metrics
from ..server import Health
from ..source.decode import make_decoder
from ..source.normalise import Identity, Limits, Missing, normalise
from ..source.partitioner import PARTITIONERS
from ..source.schemas import load_family
from ..state.partition import MARKS_KEY, RECORD_BUDGET, PartitionState
from ..state.triggers import trigger_record
from . import topics
from .changelog import Changelog, retention, trigger_settings
from .checkpoint import Offsets, Source, Window
from .deadletter import DeadLetters
from .lag import BrokerWatch, LagMonitor
from .outputs import Outputs

log = logs.get("app")
# Memory is bounded by these, not by the backlog: a window holds at most so many events
# and pending commands, and at most MAX_OUTSTANDING_WINDOWS windows wait for Journey or
# the broker before consumption pauses. The fetch queue is capped in bytes below.
MAX_WINDOW_EVENTS = 20_000
MAX_WINDOW_COMMANDS = 20_000
MAX_OUTSTANDING_WINDOWS = 2
FETCH_QUEUE_KBYTES = 16 << 10
FULL_GC_EVERY_SEALS = 120  # a full collection about every two minutes at the default window
MIN_EVENT_MS = 946_684_800_000  # 2000-01-01: earlier stamps are seconds, not ms, or junk
REPLAY_STALL_S = 30.0  # a mark not reached after this long without progress is dropped
COMMIT_FLUSH_S = 1.0  # longest the loop waits for the broker before trying again later


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
                    # the prefetch queue is bounded in bytes, whatever the backlog
                    "queued.max.messages.kbytes": FETCH_QUEUE_KBYTES,
                    "queued.min.messages": 20_000,
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
        self._outputs.on_refused(
            settings.repartition_topic,
            lambda record, error: self._dead_letters.refused(
                record, "repartition-refused", error.str()
            ),
        )
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
        self._watch = BrokerWatch()
        self._offsets = Offsets()
        self._window = Window(0)  # the window being filled
        self._awaiting: list[Window] = []  # sealed; their seal marks not yet durable
        self._to_commit: list[Window] = []  # delivered; offsets not yet committed
        self._marks: dict[int, list[list[int]]] = {}  # per partition: closes not committed
        self._marks_changed: set[int] = set()
        self._stops: dict[int, list[list[int]]] = {}  # replaying partitions: closes ahead
        self._held: set[Source] = set()  # paused and sought back until a mark is reached
        self._replay_progress: dict[int, float] = {}
        self._partition_of = PARTITIONERS[settings.partitioner]
        self._source_partitions = 0
        self._identity = Identity()
        self._limits = Limits(max_quantity=settings.max_quantity)
        self._missing: Missing = {}
        self._tally: dict[tuple[str, str], int] = {}
        self._states: dict[int, PartitionState] = {}
        self._stopping = False
        self._drained = False
        self._paused = False
        self._outage_logged = False
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
        self._prepare_topics()
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
            watch=self._watch,
        ).start()
        window_s = settings.flush_interval_ms / 1000.0
        seal_at = time.monotonic() + window_s
        try:
            while not self._stopping:
                timeout = min(max(seal_at - time.monotonic(), 0.0), 0.2)
                records = self._consumer.consume(settings.consume_batch, timeout)
                self._polled()
                if records:
                    self._watch.ok()
                    if self._stops:
                        self._replay(records)
                    else:
                        self._process(records)
                if time.monotonic() >= seal_at or self._window_full():
                    self._seal()
                    seal_at = time.monotonic() + window_s
                self._submit_sealed(0.0)
                self._commit_delivered()
                self._watch_broker()
                self._apply_backpressure()
            self._drain()
        finally:
            lag.stop()
            self._consumer.close()
            self._outputs.flush(5.0)
            self._client.close()

    def _prepare_topics(self) -> None:
        """Find the input; create the outputs (dead letters and re-keyed records take a
        record of up to OFSYS_MAX_RECORD_BYTES with its headers); read every output
        topic's size limit, which what the pipeline writes stays under."""
        settings, admin = self.settings, self._admin
        source_partitions = topics.partitions(admin, self.topic)
        if source_partitions is None:
            log.warning(
                "input topic does not exist yet; waiting for it", extra={"topic": self.topic}
            )
        self._source_partitions = source_partitions or 1
        roomy = {"max.message.bytes": str(max(settings.max_record_bytes + 65_536, 1_048_588))}
        topics.ensure(admin, settings.dlq_topic, self._source_partitions, roomy)
        topics.ensure(admin, settings.repartition_topic, self._source_partitions, roomy)
        topics.ensure(admin, settings.triggers_topic, self._source_partitions)
        outputs = [settings.dlq_topic, settings.repartition_topic, settings.triggers_topic]
        if self._changelog is not None and source_partitions is not None:
            self._changelog.ensure(admin, source_partitions)
        if self._changelog is not None:
            outputs.append(self._changelog.topic)
        self._outputs.read_limits(admin, outputs)
        if self._changelog is not None and self._outputs.limit(self._changelog.topic) < (
            RECORD_BUDGET + 1024
        ):
            raise PipelineError(
                f"changelog topic {self._changelog.topic} takes records of at most "
                f"{self._outputs.limit(self._changelog.topic)} bytes; the pipeline writes "
                f"up to {RECORD_BUDGET + 1024}: raise its max.message.bytes"
            )

    def _drain(self) -> None:
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        self._seal()
        while self._awaiting and time.monotonic() < deadline:
            self._submit_sealed(COMMIT_FLUSH_S)
        self._worker.stop(deadline)
        self._worker.join(max(deadline - time.monotonic(), 0.0) + 1.0)
        self._commit_delivered()
        while self._to_commit and time.monotonic() < deadline:
            self._commit_delivered()
        self._drained = True
        if self._worker.outstanding or self._to_commit or self._awaiting:
            log.warning(
                "exiting with undelivered windows; their records stay uncommitted",
                extra={"windows": self._worker.outstanding + len(self._to_commit)},
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
        limits = self._limits
        missing = self._missing
        max_bytes = self.settings.max_record_bytes
        latest_ms = int(time.time() * 1000) + self.settings.max_clock_skew_s * 1000
        keep_ids_ms = self._retention.event_ids_ms
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
                state = states[partition]
                ts = event["timestamp"]
                if not (max(MIN_EVENT_MS, state.stream_ms - keep_ids_ms) <= ts <= latest_ms):
                    raise _bad_time(ts, state.stream_ms - keep_ids_ms, latest_ms)
                event_ms[source] = ts
                change = normalise(event, identity, missing, limits)
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
                    elif state.apply(change):
                        outcome = "processed"
                    else:
                        outcome = "duplicate"
            except (DecodeError, InvalidEventError) as exc:
                self._dead_letters.record(msg, exc.reason, exc.detail)
                outcome = "dead_lettered"
                if type(exc) is InvalidEventError and event["name"] in EVENT_LABELS:
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

    def _window_full(self) -> bool:
        if self._offsets.events >= MAX_WINDOW_EVENTS:
            return True
        pending = 0
        for state in self._states.values():
            pending += len(state.outbox) + len(state.dirty)
        return pending >= MAX_WINDOW_COMMANDS

    # -- replay: close windows where the seal marks say ----------------------------------

    def _replay(self, records: list[Message]) -> None:
        """The slow path, while some partition has seal marks ahead: each record of such
        a partition is processed alone, and the partition is flushed exactly at each
        mark. A record past a mark that the partition's other topic has not reached yet
        waits: its topic-partition is paused and sought back to it."""
        stops, held = self._stops, self._held
        process = self._process
        for msg in records:
            partition = msg.partition()
            marks = stops.get(partition) if partition is not None else None
            if not marks or msg.error() is not None:
                process([msg])
                continue
            source: Source = (msg.topic(), partition)  # type: ignore[assignment]
            if source in held:
                continue
            offset: int = msg.offset()  # type: ignore[assignment]
            if offset >= marks[0][0 if source[0] == self.topic else 1]:
                tp = TopicPartition(source[0], source[1], offset)
                self._consumer.pause([tp])
                self._consumer.seek(tp)
                held.add(source)
                log.debug(
                    "waiting at a seal mark",
                    extra={"topic": source[0], "partition": source[1], "offset": offset},
                )
                continue
            process([msg])
            self._replay_progress[source[1]] = time.monotonic()
            self._close_reached(source[1])

    def _close_reached(self, partition: int) -> None:
        """Flush the partition at every mark both its topics have reached; resume what
        waited for it; leave replay when no mark is left ahead."""
        marks = self._stops[partition]
        here = self._sources(partition)
        positions = self._offsets.positions
        reached = False
        while marks and all(positions.get(s, 0) >= m for s, m in zip(here, marks[0], strict=True)):
            self._flush_partition(partition, self._states[partition].stream_ms, mark=False)
            marks.pop(0)
            reached = True
        if not marks:
            del self._stops[partition]
            self._replay_progress.pop(partition, None)
            log.info(
                "replay closed every window where it closed before", extra={"partition": partition}
            )
        if reached:
            waiting = [s for s in here if s in self._held]
            if waiting:
                self._held.difference_update(waiting)
                if not self._paused:
                    self._consumer.resume([TopicPartition(t, p) for t, p in waiting])

    def _give_up_stalled_replays(self) -> None:
        """A mark that no record reaches (its records are gone) must not hold the
        partition forever: after REPLAY_STALL_S without progress it is dropped."""
        now = time.monotonic()
        for partition in list(self._stops):
            since = self._replay_progress.setdefault(partition, now)
            if now - since > REPLAY_STALL_S:
                log.warning(
                    "seal marks not reached; closing windows anew",
                    extra={"partition": partition, "marks": len(self._stops[partition])},
                )
                self._stops[partition] = []
                self._close_reached(partition)

    def _sources(self, partition: int) -> tuple[Source, Source]:
        return (self.topic, partition), (self.settings.repartition_topic, partition)

    # -- seal, deliver, commit -------------------------------------------------------------

    def _flush_partition(self, partition: int, clock_ms: int, *, mark: bool) -> None:
        """Close the partition's part of the window being filled: fire its due triggers,
        make its commands (per-event ones in event order, then one net change per cart
        that changed), take its state changes, and note where it closed."""
        state = self._states[partition]
        window = self._window
        fired = state.fire_due(clock_ms)
        window.triggers.extend(fired)
        window.commands.extend(state.flush())
        if self._changelog is not None:
            window.changelog.setdefault(partition, []).extend(state.changes())
        close = self._offsets.flushed(window, self._sources(partition))
        if mark and self._changelog is not None:
            marks = self._marks.setdefault(partition, [])
            if not marks or marks[-1] != close:
                marks.append(close)
                self._marks_changed.add(partition)

    def _seal(self) -> None:
        """Close the window: flush every partition not replaying, write the new seal
        marks, and hand the window on (to the worker once the marks are durable)."""
        wall_ms = int(time.time() * 1000)
        for partition, state in self._states.items():
            if partition not in self._stops:
                clock = wall_ms if self._caught_up(partition) else state.stream_ms
                self._flush_partition(partition, clock, mark=True)
        if self._stops:
            self._give_up_stalled_replays()
        window, self._window = self._window, Window(self._offsets.generation)
        window.events, self._offsets.events = self._offsets.events, 0
        self._write_marks()
        if window:
            self._awaiting.append(window)
            self._submit_sealed(COMMIT_FLUSH_S)
        for command in window.triggers:
            self.metrics.triggers.labels(command["args"]["name"]).inc()
        self._publish_tallies()
        self._collect_garbage()

    def _write_marks(self) -> None:
        assert self._changelog is not None or not self._marks_changed
        for partition in self._marks_changed:
            marks = self._marks.get(partition)
            if partition in self._states and self._changelog is not None:
                self._changelog.write(
                    partition, [(MARKS_KEY, orjson.dumps(marks) if marks else None)]
                )
        self._marks_changed.clear()

    def _submit_sealed(self, wait_s: float) -> None:
        """Hand sealed windows to the worker once the broker has their seal marks (with
        the changelog off there are none to wait for)."""
        if not self._awaiting:
            return
        if self._changelog is not None and self._outputs.flush(wait_s):
            return  # the broker has not taken them yet: try again on the next turn
        for window in self._awaiting:
            self._worker.submit(window)
        self._awaiting.clear()

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

        0. (at seal) the window's seal marks are durable before its commands leave;
        1. the worker delivered every command of the window (accepted or dead-lettered);
        2. produce the window's state changes to the changelog, for the partitions
           still assigned in this assignment generation, and its triggers;
        3. flush the producer (dead letters, changelog, triggers); while the broker has
           not taken everything, wait (on later turns of the loop) and commit nothing;
        4. commit, synchronously, the newest offsets the windows cover; a partition the
           broker did not commit stays pending and is tried again;
        5. drop the seal marks the commit passed.

        A crash before step 3 completes restores the state from before the window and
        re-processes its records, closing windows at the same marks: the same commands
        with the same ids, which Journey keeps once. A crash between 3 and 4 restores
        the state from after it: its records are then replays and make nothing.
        """
        if self._worker.failure is not None:
            raise PipelineError("delivery failed") from self._worker.failure
        for window in self._offsets.current(self._worker.completed()):
            self._write_window(window)
            self._to_commit.append(window)
        if not self._to_commit:
            return
        self._to_commit = self._offsets.current(self._to_commit)
        if not self._to_commit or self._outputs.flush(COMMIT_FLUSH_S):
            return
        if self._offsets.commit(self._consumer, self._to_commit):
            self._watch.ok()
            self.metrics.commits.inc()
            self._to_commit.clear()
            self._prune_marks()

    def _write_window(self, window: Window) -> None:
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

    def _prune_marks(self) -> None:
        committed = self._offsets.committed
        for partition, marks in self._marks.items():
            done = [committed.get(s, 0) for s in self._sources(partition)]
            ahead = [m for m in marks if m[0] > done[0] or m[1] > done[1]]
            if len(ahead) != len(marks):
                self._marks[partition] = ahead
                self._marks_changed.add(partition)

    def _watch_broker(self) -> None:
        """Ride out a broker outage: report it, and give up only past the limit."""
        down = self._watch.down_for()
        self.health.broker_down_s = down
        self.metrics.broker_up.set(0 if down else 1)
        if down and not self._outage_logged:
            self._outage_logged = True
            log.warning(
                "Kafka broker unreachable; pausing, keeping state and uncommitted windows",
                extra={"seconds": round(down, 1), "limit_s": self.settings.broker_outage_s},
            )
        elif not down and self._outage_logged:
            self._outage_logged = False
            log.info("Kafka broker answers again; resuming")
        if down > self.settings.broker_outage_s:
            log.error(
                "Kafka broker unreachable longer than OFSYS_BROKER_OUTAGE_S; exiting "
                "without committing past what the broker took",
                extra={"seconds": round(down, 1), "limit_s": self.settings.broker_outage_s},
            )
            raise BrokerOutageError(
                f"Kafka broker unreachable for {down:.0f} s (OFSYS_BROKER_OUTAGE_S)"
            )

    def _apply_backpressure(self) -> None:
        """Pause every assigned partition while Journey retries, windows pile up, or the
        broker is away; resume all but those waiting for a seal mark."""
        worker = self._worker
        self.health.unauthorized = worker.unauthorized
        behind = (
            worker.retrying
            or worker.outstanding > MAX_OUTSTANDING_WINDOWS
            or len(self._awaiting) + len(self._to_commit) > MAX_OUTSTANDING_WINDOWS
            or self.health.broker_down_s > 0
        )
        if behind != self._paused:
            log.debug("backpressure" if behind else "resuming", extra={"held": len(self._held)})
        if behind and not self._paused:
            self._consumer.pause(self._consumer.assignment())
            self._paused = True
            self.metrics.backpressure.set(1)
        elif not behind and self._paused:
            held = self._held
            self._consumer.resume(
                [tp for tp in self._consumer.assignment() if (tp.topic, tp.partition) not in held]
            )
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
        # librdkafka keeps a partition's pause across a lost assignment: say it anew
        if self._paused:
            consumer.pause(partitions)
        else:
            consumer.resume(partitions)
        self._offsets.generation += 1
        self._window = Window(self._offsets.generation)
        for tp in consumer.committed(partitions, timeout=30):
            self._offsets.start((tp.topic, tp.partition), tp.offset)
        numbers = sorted({tp.partition for tp in partitions} - set(self._states))
        if self._changelog is None:
            self._states.update(
                {p: PartitionState(self._retention, self._triggers) for p in numbers}
            )
        elif numbers:
            self._restore(numbers)
            for partition in numbers:
                self._resume_marks(partition)
        self._assignment_changed("assigned", partitions)

    def _resume_marks(self, partition: int) -> None:
        """The restored seal marks still ahead of the committed offsets: the windows
        the previous owner sealed and may have delivered, to be closed again there."""
        positions = self._offsets.positions
        start = [positions.get(s, 0) for s in self._sources(partition)]
        ahead = [m for m in self._states[partition].marks if m[0] > start[0] or m[1] > start[1]]
        self._marks[partition] = [list(m) for m in ahead]
        if ahead:
            self._stops[partition] = [list(m) for m in ahead]
            log.info(
                "replaying to the previous owner's window closes",
                extra={"partition": partition, "marks": len(ahead)},
            )

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
        """Deliver and commit what the revoked partitions processed before letting go
        (after a drain, closing the consumer revokes with nothing left to do)."""
        if self._drained:
            self._release(partitions)
            self._assignment_changed("revoked", partitions)
            return
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        self._seal()
        while self._awaiting and time.monotonic() < deadline:
            self._submit_sealed(COMMIT_FLUSH_S)
        if not self._worker.wait_idle(max(deadline - time.monotonic(), 0.0)):
            log.warning(
                "Journey did not accept in time; revoked partitions' last records "
                "stay uncommitted and their new owner processes them again"
            )
        self._commit_delivered()
        while self._to_commit and time.monotonic() < deadline:
            self._commit_delivered()
        self._release(partitions)
        self._assignment_changed("revoked", partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release(partitions)
        self._assignment_changed("lost", partitions)

    def _release(self, partitions: list[TopicPartition]) -> None:
        """Forget the partitions, and every window whose seal marks never reached the
        broker: none of it went to Journey, and the next owner closes its windows anew
        from the committed offsets (delivering it now would send Journey a split of the
        records that no mark records). Assignments change whole (eager rebalancing)."""
        if self._window or self._awaiting:
            log.info(
                "windows not yet handed to Journey dropped with the assignment",
                extra={"windows": len(self._awaiting) + bool(self._window)},
            )
        self._window = Window(self._offsets.generation)
        self._awaiting.clear()
        for tp in partitions:
            self._states.pop(tp.partition, None)
            self._marks.pop(tp.partition, None)
            self._stops.pop(tp.partition, None)
            self._replay_progress.pop(tp.partition, None)
            self._marks_changed.discard(tp.partition)
            self._held.discard((tp.topic, tp.partition))
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


def _bad_time(ts: int, floor_ms: int, latest_ms: int) -> InvalidEventError:
    """Event time that would move stream time (expiry, triggers) where it cannot be."""
    if ts > latest_ms:
        why = "is later than wall time plus OFSYS_MAX_CLOCK_SKEW_S"
    elif ts < MIN_EVENT_MS:
        why = "is before 2000-01-01 (seconds instead of milliseconds?)"
    else:
        why = f"is older than the replay window (before {floor_ms})"
    return InvalidEventError("timestamp", reason="invalid-value", detail=f"timestamp {ts} {why}")
