"""The service's per-record work, one record at a time, with one window per event.

`Fold.step` runs a record through what `runtime/process.py` runs it through (decode,
the event-time bounds, `normalise`, the re-keying rule, `PartitionState.apply`) and then
closes a window at once, as `Checkpoint.flush_partition` closes one: due triggers on the
partition's stream time, then the state's `flush()`. So each event's commands are
exactly the ones it led to, with the service's deterministic ids.

The partition's clock (when due triggers fire) is a caught-up pipeline's: the wall
time, read as each record's Kafka timestamp (when it reached Kafka: the earliest the
pipeline saw it), never behind stream time. Triggers that fell due before a record are
a step of their own ("timers"), and so are those due by the end of the range.

Why one window per event: the pipeline closes windows on the wall clock (every
OFSYS_FLUSH_INTERVAL_MS), which no record keeps. Per-event commands (Track,
ProductView, transactions; ids `<event id>/<n>`) do not depend on windows and come out
the same. A cart's net change (ids `<cart>@<version>.<digest>/<n>`) is the same as the
pipeline's when the pipeline's window held one event of that cart, the usual case for a
live shopper (events further apart than the flush interval); when it held several (a
backlog caught up, quick clicks), the pipeline sent one net change for them where this
shows one per event: other ids, with other contents, never an id with another content.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from ..errors import DecodeError, InvalidEventError
from ..journey.commands import Command
from ..runtime.process import MIN_EVENT_MS, _bad_time
from ..source.decode import make_decoder
from ..source.identity import Identity
from ..source.normalise import Limits, Missing, normalise
from ..source.partitioner import PARTITIONERS
from ..source.schemas import load_family
from ..state.partition import PartitionState
from .timerange import iso


@dataclass
class Step:
    """One record and what it led to. `outcome` is the pipeline's (processed, duplicate,
    skipped, repartitioned, dead_lettered), or "timers" for triggers that fell due on
    the clock alone (no `msg`); `cart_id` the cart it belongs to, if known."""

    msg: Any | None
    outcome: str
    event: dict[str, Any] | None = None
    cart_id: str | None = None
    detail: str | None = None
    commands: list[Command] = field(default_factory=list)


class Fold:
    """Records of one or more input partitions through the service's code, each
    partition with its own `PartitionState` (given: from empty or the changelog)."""

    def __init__(
        self, settings: Settings, states: dict[int, PartitionState], source_partitions: int
    ) -> None:
        self.states = states
        self._decode = make_decoder(load_family("site_event"), settings.schema_registry_url)
        self._partition_of = PARTITIONERS[settings.partitioner]
        self._source_partitions = source_partitions
        self._max_bytes = settings.max_record_bytes
        self._skew_ms = settings.max_clock_skew_s * 1000
        self._keep_ids_ms = settings.retention_event_ids_s * 1000
        self._identity = Identity()
        self._limits = Limits(max_quantity=settings.max_quantity)
        self._missing: Missing = {}

    def run(self, partition: int, records: Iterable[Any], end_ms: int) -> Iterator[Step]:
        """Each record's step, with the clock's own steps before it and at `end_ms`."""
        for msg in records:
            record_ms: int = msg.timestamp()[1]
            early = self.tick(partition, record_ms - 1)
            if early.commands:
                yield early
            yield self.step(msg, record_ms)
        last = self.tick(partition, end_ms)
        if last.commands:
            yield last

    def tick(self, partition: int, clock_ms: int) -> Step:
        """The triggers due by `clock_ms` with no record: an empty window's close."""
        state = self.states[partition]
        clock_ms = max(clock_ms, state.stream_ms)
        state.fire_due(clock_ms)
        return Step(None, "timers", detail=f"due by {iso(clock_ms)}", commands=state.flush())

    def step(self, msg: Any, clock_ms: int = 0) -> Step:
        """One record, then its window's close on the clock (never behind stream time)."""
        partition: int = msg.partition()
        state = self.states[partition]
        value = msg.value()
        step = Step(msg, "processed")
        try:
            if not value:
                raise DecodeError("empty", "record has no value")
            if len(value) > self._max_bytes:
                raise DecodeError("too-large", f"{len(value)} bytes > {self._max_bytes}")
            event = self._decode(value)
            step.event = event.record()
            step.cart_id = None if event.cart is None else event.cart.id
            ts = event.timestamp
            latest_ms = int(time.time() * 1000) + self._skew_ms
            floor_ms = state.stream_ms - self._keep_ids_ms
            if ts > latest_ms or ts < MIN_EVENT_MS or ts < floor_ms:
                raise _bad_time(ts, floor_ms, latest_ms)
            change = normalise(event, self._identity, self._missing, self._limits)
            if change is None:
                step.outcome = "skipped"
            else:
                step.cart_id = cart_id = change.cart_id
                if cart_id is not None and msg.key() != cart_id.encode():
                    target = self._partition_of(cart_id.encode(), self._source_partitions)
                    if target != partition:
                        step.outcome = "repartitioned"
                        step.detail = f"re-keyed to partition {target}"
                        return step
                if not state.apply(change):
                    step.outcome = "duplicate"
        except (DecodeError, InvalidEventError) as exc:
            step.outcome = "dead_lettered"
            step.detail = f"{exc.reason}: {exc.detail}"
            if step.cart_id is None and msg.key():
                step.cart_id = bytes(msg.key()).decode(errors="replace")
        state.fire_due(max(clock_ms, state.stream_ms))
        step.commands = state.flush()
        return step
