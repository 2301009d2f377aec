"""Processing: records -> decode -> normalise -> partition state, on the hot path.

Owns the per-record work of the loop thread: decoding, the event-time bounds, the
vocabulary (`normalise`), re-keying records not keyed by their cart id, dead letters
for what cannot be used, and the tallies published at each seal. Invariant: every
consumed record moves its partition's position on, whatever its outcome (processed,
duplicate, skipped, repartitioned or dead-lettered); nothing here commits or delivers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import logs
from ..config import Settings
from ..errors import DecodeError, InvalidEventError, PipelineError
from ..metrics import EVENT_LABELS, Metrics
from ..source.decode import Decoder
from ..source.identity import Identity
from ..source.normalise import Limits, Missing, Pages, no_pages, normalise
from ..source.partitioner import PARTITIONERS
from ..state.partition import PartitionState, Retention
from .checkpoint import Checkpoint, Source
from .deadletter import DeadLetters
from .ports import Clock

log = logs.get("app")
# Memory is bounded by these, not by the backlog: a window holds at most so many events
# and pending commands before it is sealed. A command waiting for Journey costs about
# 0.8 KiB (its dict, args and ids), and up to MAX_OUTSTANDING_WINDOWS + 1 windows are
# held at once: 20,000 commands are about 16 MiB a window.
MAX_WINDOW_EVENTS = 20_000
MAX_WINDOW_COMMANDS = 20_000
NET_CHANGE_COMMANDS = 4  # a dirty cart's net change: Add/UpdateCart, a line or two, Submit
MIN_EVENT_MS = 946_684_800_000  # 2000-01-01: earlier stamps are seconds, not ms, or junk


class Processor:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        states: dict[int, PartitionState],
        checkpoint: Checkpoint,
        dead_letters: DeadLetters,
        produce: Callable[..., None],
        retention: Retention,
        clock: Clock,
        decode: Decoder,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self.states = states
        self._checkpoint = checkpoint
        self._dead_letters = dead_letters
        self._produce = produce
        self._retention = retention
        self._clock = clock
        self._decode = decode
        self._partition_of = PARTITIONERS[settings.partitioner]
        self.source_partitions = 1
        self._identity = Identity()
        self._limits = Limits(max_quantity=settings.max_quantity)
        self._missing: Missing = {}
        self._tally: dict[tuple[str, str], int] = {}

    def __call__(self, records: list[Any]) -> None:
        decode = self._decode
        states = self.states
        positions = self._checkpoint.offsets.positions
        event_ms = self._checkpoint.offsets.event_ms
        tally = self._tally
        identity = self._identity
        limits = self._limits
        missing = self._missing
        max_bytes = self._settings.max_record_bytes
        latest_ms = int(self._clock.time() * 1000) + self._settings.max_clock_skew_s * 1000
        keep_ids_ms = self._retention.event_ids_ms
        # a poll's records come in runs of one (topic, partition): its position and event
        # time are kept here while the run lasts and written when it ends, not per record
        source: Source = ("", -1)
        position, ts_ms = -1, -1
        state: PartitionState | None = None
        pages: Pages = no_pages
        try:
            for msg in records:
                if msg.error() is not None:
                    self._consumer_error(msg)
                    continue
                partition: int = msg.partition()
                topic: str = msg.topic()
                if partition != source[1] or topic != source[0]:
                    _moved(positions, event_ms, source, position, ts_ms)
                    source, position, ts_ms = (topic, partition), -1, -1
                    state = states[partition]
                    pages = state.page_of
                value = msg.value()
                name = "other"
                try:
                    if not value:
                        raise DecodeError("empty", "record has no value")
                    if len(value) > max_bytes:
                        raise DecodeError("too-large", f"{len(value)} bytes > {max_bytes}")
                    event = decode(value)
                    assert state is not None  # set with the run's source
                    ts = event.timestamp
                    floor_ms = state.stream_ms - keep_ids_ms
                    if ts > latest_ms or ts < MIN_EVENT_MS or ts < floor_ms:
                        raise _bad_time(ts, floor_ms, latest_ms)
                    ts_ms = ts
                    change = normalise(event, identity, missing, limits, pages)
                    if change is None:
                        outcome = "skipped"
                    else:
                        name = event.name
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
                    if type(exc) is InvalidEventError and event.name in EVENT_LABELS:
                        name = event.name
                position = msg.offset() + 1
                key = (name, outcome)
                tally[key] = tally.get(key, 0) + 1
        finally:
            _moved(positions, event_ms, source, position, ts_ms)
        self._checkpoint.offsets.events += len(records)

    def _rekey(self, cart_id: str, value: bytes, partition: int) -> bool:
        """A record not keyed by its cart id goes, keyed by it, to the repartition topic's
        partition that holds that cart (computed with the producers' partitioner), and is
        processed when it comes back from there: left here it would split the cart's
        state across partitions. False when it already sits on the cart's partition."""
        key = cart_id.encode()
        target = self._partition_of(key, self.source_partitions)
        if target == partition:
            return False
        self._produce(self._settings.repartition_topic, key, value, partition=target)
        return True

    def _consumer_error(self, msg: Any) -> None:
        error = msg.error()
        assert error is not None
        if error.fatal():
            raise PipelineError(f"Kafka consumer failed: {error.str()}")
        log.warning(
            "consumer error",
            extra={"error": error.str(), "topic": msg.topic(), "partition": msg.partition()},
        )

    def window_full(self) -> bool:
        if self._checkpoint.offsets.events >= MAX_WINDOW_EVENTS:
            return True
        pending = 0
        for state in self.states.values():
            pending += len(state.outbox) + NET_CHANGE_COMMANDS * len(state.dirty)
        return pending >= MAX_WINDOW_COMMANDS

    def publish_tallies(self) -> None:
        metrics = self._metrics
        for (name, outcome), count in self._tally.items():
            metrics.events.labels(name, outcome).inc(count)
        self._tally.clear()
        for (name, field), count in self._missing.items():
            metrics.missing_fields.labels(name, field).inc(count)
        self._missing.clear()
        if self._identity.invalid:
            metrics.invalid_emails.inc(self._identity.invalid)
            self._identity.invalid = 0
        for partition, state in self.states.items():
            metrics.carts.labels(str(partition)).set(len(state.carts))
            metrics.event_ids.labels(str(partition)).set(len(state.event_ids))


def _moved(
    positions: dict[Source, int], event_ms: dict[Source, int], source: Source, at: int, ts: int
) -> None:
    """A run of records from `source` ended: its next offset `at` and the event time of
    its last record with a usable one, `ts` (-1: none in the run, so neither moved)."""
    if at >= 0:
        positions[source] = at
    if ts >= 0:
        event_ms[source] = ts


def _bad_time(ts: int, floor_ms: int, latest_ms: int) -> InvalidEventError:
    """Event time that would move stream time (expiry, triggers) where it cannot be."""
    if ts > latest_ms:
        why = "is later than wall time plus OFSYS_MAX_CLOCK_SKEW_S"
    elif ts < MIN_EVENT_MS:
        why = "is before 2000-01-01 (seconds instead of milliseconds?)"
    else:
        why = f"is older than the replay window (before {floor_ms})"
    return InvalidEventError("timestamp", reason="invalid-value", detail=f"timestamp {ts} {why}")
