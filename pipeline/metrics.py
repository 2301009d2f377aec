"""Every Prometheus metric of the pipeline, declared once, on a registry passed in.

Naming follows the Prometheus guide: `ofsys_` prefix, base units, `_total` counters.
Labels come only from small fixed sets (event names outside the vocabulary become
`other`); the label values below are pre-created so every series exists at 0. Calls
come from the contract's table (journey.commands.CALL_NAMES), retry and dead-letter
reasons from the error tree's tables (errors.RETRY_REASONS, DEAD_LETTER_REASONS).
"""

from __future__ import annotations

import bisect
import math

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from . import __version__
from .compiled import compiled
from .errors import DEAD_LETTER_REASONS, RETRY_REASONS
from .journey.commands import CALL_NAMES
from .source.normalise import EVENT_NAMES

EVENT_LABELS = (*EVENT_NAMES, "other")
OUTCOMES = ("processed", "skipped", "duplicate", "dead_lettered", "repartitioned")
ERASURE_KINDS = ("cart", "email")
BATCH_RESULTS = ("accepted", "rejected", "retried", "unauthorized")
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry or CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        Info("ofsys_build", "Version of the running pipeline.", registry=registry).info(
            {"version": __version__, "compiled": str(compiled()).lower()}
        )
        self.events = Counter(
            "ofsys_events_total",
            "Site events consumed, by event name and outcome.",
            ["event", "outcome"],
            registry=registry,
        )
        self.commands = Counter(
            "ofsys_commands_delivered_total",
            "Commands Journey accepted, by call.",
            ["call"],
            registry=registry,
        )
        self.batches = Counter(
            "ofsys_journey_batches_total",
            "Journey requests by result.",
            ["result"],
            registry=registry,
        )
        self.bytes_sent = Counter(
            "ofsys_journey_sent_bytes_total",
            "Request body bytes sent to Journey.",
            registry=registry,
        )
        self.in_flight = Gauge(
            "ofsys_journey_requests_in_flight",
            "Journey requests sent and not yet answered (at most OFSYS_JOURNEY_MAX_IN_FLIGHT).",
            registry=registry,
        )
        self.request_duration = Histogram(
            "ofsys_journey_request_duration_seconds",
            "Duration of one Journey request.",
            registry=registry,
        )
        self.latency = Histogram(
            "ofsys_end_to_end_latency_seconds",
            "Journey acceptance time minus the event time of each delivered command.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "ofsys_journey_retries_total",
            "Journey requests retried, by reason.",
            ["reason"],
            registry=registry,
        )
        self.unauthorized = Gauge(
            "ofsys_journey_unauthorized",
            "1 while Journey answers 401/403 to the account key.",
            registry=registry,
        )
        self.backpressure = Gauge(
            "ofsys_backpressure",
            "1 while consumption is paused for a retrying delivery.",
            registry=registry,
        )
        self.throttled = Counter(
            "ofsys_journey_throttled_seconds_total",
            "Seconds delivery waited for this member's share of the group's Journey rate "
            "limit (OFSYS_JOURNEY_MAX_*_PER_S); consumption is paused meanwhile.",
            registry=registry,
        )
        self.erasures = Counter(
            "ofsys_erasures_total",
            "Forget requests (GDPR erasure) applied to a partition's state, by what named "
            "the shopper.",
            ["kind"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "ofsys_dead_letters_total",
            "Records and commands sent to the dead-letter topic.",
            ["reason"],
            registry=registry,
        )
        self.dead_letter_values_dropped = Counter(
            "ofsys_dead_letter_values_dropped_total",
            "Dead letters sent without their value: too large for, or refused by, the topic.",
            registry=registry,
        )
        self.dead_letters_refused = Counter(
            "ofsys_dead_letters_refused_total",
            "Dead letters the broker refused even without a value (logged, not retried).",
            registry=registry,
        )
        self.broker_up = Gauge(
            "ofsys_broker_up",
            "1 while the Kafka broker answers; 0 while the pipeline rides out an outage.",
            registry=registry,
        )
        self.missing_fields = Counter(
            "ofsys_missing_fields_total",
            "Optional fields the browser integration validated, missing, or dropped as "
            "out of range (`<field>:too-long`, `:out-of-range`), by event and field.",
            ["event", "field"],
            registry=registry,
        )
        self.invalid_emails = Counter(
            "ofsys_invalid_emails_total",
            "user.email values that are not e-mail addresses.",
            registry=registry,
        )
        self.lag_messages = Gauge(
            "ofsys_consumer_lag_messages",
            "High watermark minus committed offset, per assigned partition.",
            ["partition"],
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "ofsys_consumer_lag_seconds",
            "Now minus the event time of the last committed record, per assigned partition.",
            ["partition"],
            registry=registry,
        )
        self.commits = Counter(
            "ofsys_offset_commits_total",
            "Offset commits after accepted deliveries.",
            registry=registry,
        )
        self.carts = Gauge(
            "ofsys_state_carts",
            "Carts held in partition state, per partition.",
            ["partition"],
            registry=registry,
        )
        self.event_ids = Gauge(
            "ofsys_state_event_ids",
            "Event ids remembered for replays, per partition.",
            ["partition"],
            registry=registry,
        )
        self.restore_seconds = Histogram(
            "ofsys_state_restore_duration_seconds",
            "Time to restore assigned partitions' state from the changelog.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
            registry=registry,
        )
        self.restored_records = Counter(
            "ofsys_state_restored_records_total",
            "Changelog records read while restoring.",
            registry=registry,
        )
        self.triggers = Counter(
            "ofsys_triggers_total",
            "Triggers the pipeline fired itself, by name.",
            ["name"],
            registry=registry,
        )
        self.assigned = Gauge(
            "ofsys_assigned_partitions",
            "Input partitions assigned to this process.",
            registry=registry,
        )
        self.rebalances = Counter(
            "ofsys_rebalances_total",
            "Partition assignment changes, by kind.",
            ["kind"],
            registry=registry,
        )
        self.last_poll = Gauge(
            "ofsys_last_poll_timestamp_seconds", "When the consumer last polled.", registry=registry
        )
        for event in EVENT_LABELS:
            for outcome in OUTCOMES:
                self.events.labels(event, outcome)
        for call in CALL_NAMES:
            self.commands.labels(call)
        for result in BATCH_RESULTS:
            self.batches.labels(result)
        for retry in RETRY_REASONS:
            self.retries.labels(retry)
        for dead in DEAD_LETTER_REASONS:
            self.dead_letters.labels(dead)
        for name in ("AbandonedCart", "BrowseAbandonment"):
            self.triggers.labels(name)
        for erased in ERASURE_KINDS:
            self.erasures.labels(erased)
        for kind in ("assigned", "revoked", "lost"):
            self.rebalances.labels(kind)


def observe_many(histogram: Histogram, values: list[float]) -> None:
    """`histogram.observe(v)` for each of `values` (a batch's commands), with one
    increment per bucket instead of a lock round per value: the delivery lanes hold the
    GIL for less. It counts into the Histogram's own buckets and sum (prometheus_client's
    internals, pinned in constraints.txt; tests/unit/test_metrics.py checks the result
    equals observing one by one, and it falls back to that if they are not there)."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    total.inc(math.fsum(values))
