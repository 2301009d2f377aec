"""The run loop: poll, process, seal, commit, resume, and nothing else.

Owns the loop thread's turn and the lifecycle: subscribing, the rebalance callbacks
(`Rebalancing`, in rebalance.py), and the drain on `stop()`; it asks `Backpressure`
(riding out a broker outage too) when to pause, `Replay` where to close, `Checkpoint`
how to seal and commit. What it is given
(consumer, outputs, Journey worker and client, changelog store, clock) are the
`Protocol`s of ports.py, built by wiring.py or by `pipeline.testing`. Invariants: only
this thread touches the consumer; the seal and commit order lives in `Checkpoint`;
the shutdown path — seal, wait for Journey, changelog, flush, commit, close — takes
every step's budget from one deadline, OFSYS_SHUTDOWN_TIMEOUT_S after `stop()`; a
revocation settles under a deadline of the same length.

A broker that stops answering is ridden out: records and windows wait, uncommitted,
consumption pauses, /readyz says why, and the loop goes on when the broker is back; it
exits only after OFSYS_BROKER_OUTAGE_S.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Callable

from confluent_kafka import TopicPartition

from .. import logs
from ..compiled import compiled
from ..config import Settings
from ..errors import RestoreInterruptedError
from ..metrics import Metrics
from ..server import Health
from ..source.decode import make_decoder
from ..source.schemas import load_family
from ..state.partition import PartitionState
from .backpressure import Backpressure
from .changelog import retention, trigger_settings
from .checkpoint import COMMIT_FLUSH_S, Checkpoint, Deadline
from .control import Control
from .memory import release
from .offsets import LateError, bounded
from .ports import LagView, Parts, Service
from .process import Processor
from .rebalance import Rebalancing
from .replay import Replay

log = logs.get("app")
FULL_GC_EVERY_SEALS = 120  # a full collection about every two minutes at the default window
# free heap pages go back to the system at every few seals, and at the first seal of
# a quiet window: a pass walks the whole heap (milliseconds each, see docs/benchmarks.md,
# 2026-12-07 afternoon), and what a window freed is reused by the next one anyway; a
# backlog caught up still ends with its pages given back
TRIM_EVERY_SEALS = 4
QUIET_WINDOW_EVENTS = 1000
# allocations between two young-generation passes (CPython: 700). The decoder's
# per-record dicts set off a pass every few hundred records, 6.4 % of the loop's time
# (P3); state is frozen at each seal, so a rarer pass scans no more (G runs)
GEN0_THRESHOLD = 100_000
# How long a thread holding the GIL runs before one waiting for it is let in (CPython: 5
# ms). The loop thread holds it almost always (98 % of GIL samples), and a delivery lane
# waits up to this long at each of the many GIL hand-offs of an HTTP request, so a
# window's last batch reaches Journey later. At 15,500 events/s, p99 over five runs each:
# 1,675-2,543 ms (median 1,827) at 5 ms, 1,247-1,981 (median 1,472) at 1 ms, the
# throughput unchanged (docs/benchmarks.md, 2026-12-07, KS)
SWITCH_INTERVAL_S = 0.001
CLOSE_RESERVE_S = 3.0  # of the shutdown deadline, kept for closing (at most a quarter)
# records processed between two looks at the clock: a window due mid-batch is sealed
# within a few milliseconds, not after the whole poll's records (end-to-end latency)
SEAL_CHECK_RECORDS = 256
# While it holds (backpressure.py), the loop looks this often whether a window is done
HOLD_SLICE_S = 0.002


class Pipeline(Rebalancing):
    def __init__(self, settings: Settings, metrics: Metrics, health: Health, parts: Parts) -> None:
        self.settings = settings
        self.metrics = metrics
        self.health = health
        self.topic = settings.topic
        self.parts = parts
        self._consumer = parts.consumer
        self._worker = parts.worker
        self._clock = parts.clock
        self.states: dict[int, PartitionState] = {}
        self._retention = retention(settings)
        self._triggers = trigger_settings(settings)
        trigger_family = load_family("trigger")
        self.checkpoint = Checkpoint(
            topics=(settings.topic, settings.repartition_topic),
            consumer=parts.consumer,
            outputs=parts.outputs,
            worker=parts.worker,
            store=parts.store,
            states=self.states,
            clock=parts.clock,
            triggers_topic=settings.triggers_topic,
            encode_trigger=trigger_family.encode_single_object,
            on_commit=self._committed,
        )
        self._process = Processor(
            settings,
            metrics,
            states=self.states,
            checkpoint=self.checkpoint,
            dead_letters=parts.dead_letters,
            produce=parts.outputs.produce,
            retention=self._retention,
            clock=parts.clock,
            decode=make_decoder(load_family("site_event"), settings.schema_registry_url),
        )
        self.replay = Replay(
            topic=settings.topic,
            consumer=parts.consumer,
            checkpoint=self.checkpoint,
            clock=parts.clock,
            process=self._process,
            paused=lambda: self._backpressure.paused,
        )
        self._control = Control(
            settings.control_topic,
            states=self.states,
            checkpoint=self.checkpoint,
            replaying=lambda partition: partition in self.replay.stops,
            metrics=metrics,
            changelog=parts.store is not None,
        )
        self._backpressure = Backpressure(
            settings,
            metrics,
            health,
            consumer=parts.consumer,
            worker=parts.worker,
            checkpoint=self.checkpoint,
            held=self.replay.held,
            clock=parts.clock,
        )
        self._stopping = False
        self._stop_at: float | None = None
        self._drained = False
        self._seals = 0
        self._quiet = False  # the last window sealed was quiet (QUIET_WINDOW_EVENTS)
        self._seal_at = 0.0
        self._monitor: Service | None = None

    def state_snapshot(self) -> dict[int, dict[str, object]]:
        """Each assigned partition's state as plain data (for tests and the benchmark)."""
        return {partition: state.snapshot() for partition, state in self.states.items()}

    def committed(self) -> dict[int, int]:
        """The input topic's offsets this process committed, per partition (a copy)."""
        committed = self.checkpoint.offsets.committed
        return {p: offset for (topic, p), offset in committed.items() if topic == self.topic}

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to drain and exit; safe from a signal handler. The shutdown
        deadline counts from the first call."""
        if self._stop_at is None:
            self._stop_at = self._clock.monotonic()
        self._stopping = True

    def run(self) -> None:
        """Start, turn until `stop()`, drain, and close: the whole life of the loop."""
        self.start()
        try:
            # a stop() during a restore abandons it: none of its records was processed
            with contextlib.suppress(RestoreInterruptedError):
                while not self._stopping:
                    self.turn()
            self.drain()
        finally:
            self.close()

    def start(self) -> None:
        """Ready the topics, join the group, start the lag monitor."""
        settings, parts = self.settings, self.parts
        self._process.source_partitions = parts.prepare()
        self._consumer.subscribe(
            [self.topic, settings.repartition_topic, settings.control_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info(
            "consuming",
            extra={"topic": self.topic, "group_id": settings.group_id, "compiled": compiled()},
        )
        committed_ms = self.checkpoint.offsets.committed_event_ms
        view = LagView(
            lambda: list(self.states),
            lambda partition: committed_ms.get((self.topic, partition)),
            self._backpressure.watch,
        )
        self._monitor = parts.monitor(view) if parts.monitor is not None else None
        self._seal_at = self._clock.monotonic() + self.settings.flush_interval_ms / 1000.0
        gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])
        sys.setswitchinterval(SWITCH_INTERVAL_S)

    def turn(self) -> None:
        """One turn: poll, process, seal when due, hand on, commit, watch, back off."""
        clock, checkpoint = self._clock, self.checkpoint
        timeout = min(max(self._seal_at - clock.monotonic(), 0.0), 0.2)
        if self._backpressure.holding:  # windows pile up: wait for one, read nothing
            clock.sleep(min(timeout, HOLD_SLICE_S))
            records = []
        else:
            records = self._consumer.consume(self.settings.consume_batch, timeout)
            self._polled()
        records = self._control.take(records)  # forget requests out, applied (control.py)
        if records:
            self._backpressure.watch.ok()
            if self.replay:
                self.replay.records(records)
            else:
                for start in range(0, len(records), SEAL_CHECK_RECORDS):
                    self._process(records[start : start + SEAL_CHECK_RECORDS])
                    self._seal_if_due()
        self._seal_if_due()
        checkpoint.submit(0.0)
        checkpoint.commit()
        self._backpressure.watch_broker()
        self._backpressure.apply()

    def _seal_if_due(self) -> None:
        """Seal when the window's time is up (or it is full). Windows keep a fixed
        cadence: the next one is due an interval after this one was due, not after the
        seal ended, so the time a seal takes does not lengthen every window (an event
        waits at most about one interval); a window sealed because it was full, or a
        seal so late that the next one is already overdue, starts the cadence anew."""
        due = self._clock.monotonic() >= self._seal_at
        if not due and not self._process.window_full():
            return
        self.seal()
        interval = self.settings.flush_interval_ms / 1000.0
        now = self._clock.monotonic()
        if due and self._seal_at + interval > now:
            self._seal_at += interval
        else:
            self._seal_at = now + interval

    def close(self) -> None:
        """Stop the lag monitor, close the consumer, flush the producer and close the
        Journey client, each within what is left of the shutdown deadline."""
        deadline = self._shutdown_deadline()
        if self._monitor is not None:
            _bounded(self._monitor.stop, deadline.remaining(), "lag monitor stop")
        _bounded(self._consumer.close, deadline.remaining(), "consumer close")
        self.parts.outputs.flush(deadline.remaining())
        _bounded(self.parts.client.close, deadline.remaining(), "Journey client close")

    def _shutdown_deadline(self, reserve: float = 0.0) -> Deadline:
        """OFSYS_SHUTDOWN_TIMEOUT_S after `stop()` (or from now, on an error), less
        `reserve` (kept for closing)."""
        if self._stop_at is None:
            self._stop_at = self._clock.monotonic()
        timeout = self.settings.shutdown_timeout_s
        return Deadline(self._clock, timeout - reserve, start=self._stop_at)

    def _drain_deadline(self) -> Deadline:
        return self._shutdown_deadline(min(CLOSE_RESERVE_S, self.settings.shutdown_timeout_s / 4))

    def drain(self) -> None:
        """Seal, wait for Journey, write the changelog, flush and commit, within the
        shutdown deadline less what closing needs."""
        deadline = self._drain_deadline()
        self.seal()
        while self.checkpoint.awaiting and not deadline.passed():
            self.checkpoint.submit(deadline.budget(COMMIT_FLUSH_S))
        self._worker.stop(deadline.at)
        self._worker.join(deadline.remaining())
        self.checkpoint.settle(deadline)
        self._drained = True
        self.checkpoint.report_uncommitted()

    # -- seal ------------------------------------------------------------------------------

    def seal(self) -> None:
        """Close the window: flush every partition not replaying, write the new seal
        marks, and hand the window on (to the worker once the marks are durable)."""
        checkpoint = self.checkpoint
        wall_ms = int(self._clock.time() * 1000)
        flushed = []
        for partition, state in self.states.items():
            if partition not in self.replay.stops:
                clock = wall_ms if self._caught_up(partition) else state.stream_ms
                checkpoint.flush_partition(partition, clock, mark=True, changes=False)
                flushed.append(partition)
        if self.replay:
            self.replay.give_up_stalled()
        window = checkpoint.seal()
        # the changelog records are needed only at commit, after Journey accepted the
        # window: made once its commands are on their way (and before the next event)
        for partition in flushed:
            checkpoint.take_changes(window, partition)
        for command in window.triggers:
            self.metrics.triggers.labels(command["args"]["name"]).inc()
        self._process.publish_tallies()
        self._collect_garbage(quiet=window.events < QUIET_WINDOW_EVENTS)

    def _caught_up(self, partition: int) -> bool:
        """Read to the end of this partition of the input and of the repartition topic,
        by the high watermark of the last fetch (a local lookup, no request)."""
        for topic in (self.topic, self.settings.repartition_topic):
            tp = TopicPartition(topic, partition)
            try:
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
                [position] = self._consumer.position([tp])
            except Exception:  # KafkaException from librdkafka: not known yet
                return False
            if high > 0 and position.offset < high:
                return False
        return True

    def _collect_garbage(self, *, quiet: bool) -> None:
        """Keep the cyclic GC off the hot path. Partition state is long-lived and acyclic
        (refcounting frees it), yet every young-generation pass would re-scan what a
        window added. Freezing at each seal moves survivors out of the scanned
        generations; an occasional full collection catches any stray cycle. Every few
        seals, and when the windows go quiet, the free pages go back to the system
        (TRIM_EVERY_SEALS): the backlog's final RSS fell 22 MiB (docs/benchmarks.md, R1/R2)."""
        self._seals += 1
        if self._seals % FULL_GC_EVERY_SEALS == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
        if self._seals % TRIM_EVERY_SEALS == 0 or (quiet and not self._quiet):
            release()
        self._quiet = quiet

    def _committed(self) -> None:
        self._backpressure.watch.ok()
        self.metrics.commits.inc()

    def _polled(self) -> None:
        self.health.last_poll = self._clock.monotonic()
        self.metrics.last_poll.set(self._clock.time())


def _bounded(step: Callable[[], None], seconds: float, what: str) -> None:
    """A closing step within what is left of the deadline (abandoned past it)."""
    with contextlib.suppress(LateError):
        bounded(step, seconds, what)
