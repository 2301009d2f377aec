"""The queries of the Grafana dashboard, apart from its layout (kubernetes-mixin's manner).

Every query filters on the `namespace` and `pod` variables (SEL). ops/dashboard.py turns
these rows into the dashboard with grafana-foundation-sdk; tests/unit/test_ops.py and
tests/integration/test_prometheus.py check each query names a declared metric and
returns data from a real Prometheus.
"""

from __future__ import annotations

SEL = '{namespace=~"$namespace", pod=~"$pod"}'


def rate(metric: str, by: str = "", window: str = "$__rate_interval") -> str:
    """sum [by (...)] (rate(metric{selector}[window]))."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{SEL}[{window}]))"


def quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{SEL}[$__rate_interval])))"


# A target is (PromQL, legend). A panel is (title, kind, unit, description, targets).
Target = tuple[str, str]
Panel = tuple[str, str, str, str, list[Target]]

ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Overview",
        [
            (
                "Events consumed",
                "stat",
                "ops",
                "Site events consumed per second, all outcomes.",
                [(rate("ofsys_events_total"), "events/s")],
            ),
            (
                "Consumer lag",
                "stat",
                "short",
                "Records not yet committed, summed over the partitions of the selected pods.",
                [(f"sum (ofsys_consumer_lag_messages{SEL})", "messages")],
            ),
            (
                "Oldest uncommitted event",
                "stat",
                "s",
                "The largest lag in seconds over the selected partitions.",
                [(f"max (ofsys_consumer_lag_seconds{SEL})", "seconds")],
            ),
            (
                "Journey refuses the key",
                "stat",
                "bool_yes_no",
                "1 while Journey answers 401/403: nothing is delivered or committed.",
                [(f"max (ofsys_journey_unauthorized{SEL})", "unauthorized")],
            ),
            (
                "Backpressure",
                "stat",
                "bool_yes_no",
                "1 while consumption is paused for a retrying delivery.",
                [(f"max (ofsys_backpressure{SEL})", "paused")],
            ),
            (
                "Version",
                "stat",
                "none",
                "Pipeline version per pod (ofsys_build_info).",
                [(f"count by (version) (ofsys_build_info{SEL})", "{{version}}")],
            ),
        ],
    ),
    (
        "Throughput",
        [
            (
                "Events by outcome",
                "timeseries",
                "ops",
                "Consumed site events per second: processed, skipped (outside the "
                "vocabulary), duplicate (replayed event ids), dead_lettered.",
                [(rate("ofsys_events_total", "outcome"), "{{outcome}}")],
            ),
            (
                "Commands delivered by call",
                "timeseries",
                "ops",
                "Commands Journey accepted per second, by Journey call.",
                [(rate("ofsys_commands_delivered_total", "call"), "{{call}}")],
            ),
            (
                "Journey bytes sent",
                "timeseries",
                "Bps",
                "Request body bytes sent to Journey per second.",
                [(rate("ofsys_journey_sent_bytes_total"), "bytes/s")],
            ),
            (
                "Offset commits",
                "timeseries",
                "ops",
                "Offset commits per second (one per delivered window).",
                [(rate("ofsys_offset_commits_total", "pod"), "{{pod}}")],
            ),
        ],
    ),
    (
        "Lag and latency",
        [
            (
                "Lag by partition (messages)",
                "timeseries",
                "short",
                "High watermark minus committed offset, per input partition (refreshed "
                "every 5 s by the pipeline).",
                [(f"sum by (partition) (ofsys_consumer_lag_messages{SEL})", "p{{partition}}")],
            ),
            (
                "Lag by partition (seconds)",
                "timeseries",
                "s",
                "Now minus the event time of the last committed record, per input "
                "partition; 0 when the partition is caught up.",
                [(f"max by (partition) (ofsys_consumer_lag_seconds{SEL})", "p{{partition}}")],
            ),
            (
                "End-to-end latency",
                "timeseries",
                "s",
                "Journey acceptance time minus event time of each delivered command.",
                [
                    (quantile(0.5, "ofsys_end_to_end_latency_seconds"), "p50"),
                    (quantile(0.95, "ofsys_end_to_end_latency_seconds"), "p95"),
                    (quantile(0.99, "ofsys_end_to_end_latency_seconds"), "p99"),
                ],
            ),
            (
                "Journey request duration p95",
                "timeseries",
                "s",
                "95th percentile of one accepted Journey request.",
                [(quantile(0.95, "ofsys_journey_request_duration_seconds"), "p95")],
            ),
            (
                "Journey requests in flight",
                "timeseries",
                "short",
                "Requests sent and not yet answered, summed over the members; each "
                "member sends at most OFSYS_JOURNEY_MAX_IN_FLIGHT at once.",
                [(f"sum(ofsys_journey_requests_in_flight{SEL})", "in flight")],
            ),
        ],
    ),
    (
        "Journey and errors",
        [
            (
                "Journey batches by result",
                "timeseries",
                "reqps",
                "Journey requests per second: accepted, rejected (400/422), retried, "
                "unauthorized (401/403).",
                [(rate("ofsys_journey_batches_total", "result"), "{{result}}")],
            ),
            (
                "Journey retries by reason",
                "timeseries",
                "reqps",
                "Retried Journey requests per second by reason.",
                [(rate("ofsys_journey_retries_total", "reason"), "{{reason}}")],
            ),
            (
                "Journey rate limit: throttled, and erasures",
                "timeseries",
                "short",
                "Seconds per second each pod waited for its share of the group's Journey "
                "rate limit (OFSYS_JOURNEY_MAX_*_PER_S), and shoppers forgotten per second.",
                [
                    (rate("ofsys_journey_throttled_seconds_total", "pod"), "throttled {{pod}}"),
                    (rate("ofsys_erasures_total", "kind"), "erased by {{kind}}"),
                ],
            ),
            (
                "Dead letters by reason",
                "timeseries",
                "ops",
                "Records and commands sent to the dead-letter topic per second.",
                [
                    (rate("ofsys_dead_letters_total", "reason"), "{{reason}}"),
                    (rate("ofsys_dead_letter_values_dropped_total"), "sent without value"),
                    (rate("ofsys_dead_letters_refused_total"), "refused by the broker"),
                ],
            ),
            (
                "Missing optional fields",
                "timeseries",
                "ops",
                "Optional fields the browser integration should send but did not, per "
                "second, by event and field; and user.email values that are not addresses.",
                [
                    (rate("ofsys_missing_fields_total", "event, field"), "{{event}} {{field}}"),
                    (rate("ofsys_invalid_emails_total"), "invalid user.email"),
                ],
            ),
        ],
    ),
    (
        "State",
        [
            (
                "Carts in state",
                "timeseries",
                "short",
                "Carts held in partition state, per pod (summed over its partitions).",
                [(f"sum by (pod) (ofsys_state_carts{SEL})", "{{pod}}")],
            ),
            (
                "Event ids remembered",
                "timeseries",
                "short",
                "Event ids remembered to recognise replays, per pod.",
                [(f"sum by (pod) (ofsys_state_event_ids{SEL})", "{{pod}}")],
            ),
            (
                "State restore",
                "timeseries",
                "short",
                "Changelog records read per second while restoring partition state, and "
                "the share of time spent restoring (seconds per second).",
                [
                    (rate("ofsys_state_restored_records_total", "pod"), "records/s {{pod}}"),
                    (
                        rate("ofsys_state_restore_duration_seconds_sum", "pod"),
                        "restoring {{pod}}",
                    ),
                ],
            ),
            (
                "Assigned partitions",
                "timeseries",
                "short",
                "Input partitions assigned to each pod.",
                [(f"sum by (pod) (ofsys_assigned_partitions{SEL})", "{{pod}}")],
            ),
            (
                "Rebalances",
                "timeseries",
                "short",
                "Partition assignment changes by kind (assigned, revoked, lost).",
                [
                    (
                        f"sum by (kind) (increase(ofsys_rebalances_total{SEL}[$__rate_interval]))",
                        "{{kind}}",
                    )
                ],
            ),
        ],
    ),
    (
        "Triggers",
        [
            (
                "Triggers fired",
                "timeseries",
                "short",
                "AbandonedCart and BrowseAbandonment triggers the pipeline fired, by name.",
                [
                    (
                        f"sum by (name) (increase(ofsys_triggers_total{SEL}[$__rate_interval]))",
                        "{{name}}",
                    )
                ],
            ),
        ],
    ),
    (
        "Health",
        [
            (
                "Backpressure and unauthorized",
                "timeseries",
                "short",
                "1 while consumption is paused (backpressure) or Journey refuses the key; "
                "0 for broker up while the pipeline rides out a broker outage.",
                [
                    (f"max by (pod) (ofsys_backpressure{SEL})", "backpressure {{pod}}"),
                    (f"max by (pod) (ofsys_journey_unauthorized{SEL})", "unauthorized {{pod}}"),
                    (f"min by (pod) (ofsys_broker_up{SEL})", "broker up {{pod}}"),
                ],
            ),
            (
                "Time since last poll",
                "timeseries",
                "s",
                "Seconds since each pod last polled Kafka (readiness fails when stale).",
                [(f"time() - max by (pod) (ofsys_last_poll_timestamp_seconds{SEL})", "{{pod}}")],
            ),
            (
                "CPU",
                "timeseries",
                "percentunit",
                "CPU time used per second, per pod (1 = one core).",
                [(rate("process_cpu_seconds_total", "pod"), "{{pod}}")],
            ),
            (
                "Resident memory",
                "timeseries",
                "bytes",
                "Resident set size per pod.",
                [(f"sum by (pod) (process_resident_memory_bytes{SEL})", "{{pod}}")],
            ),
        ],
    ),
]
