"""`ofsys-pipeline bench --backlog N[,N...]`: the RSS of `ofsys-pipeline run`, as its
own process watched from outside, while it catches up a backlog, and the restore rate
of the same process restarted.

For each N, on the embedded broker and a fresh Journey emulator (its own process), the
backlog goes to a fresh topic before the pipeline starts: with `--backlog-shape
traffic`, N events of shop traffic (UUID event ids, 1 % replays, 0.1 % bad records, the
same seed and visitors for every N, so a smaller backlog is a prefix of a larger one);
with `carts`, issue 12's memory shape, N carts of two Added Product events each, the
first carrying the e-mail (2N events and event ids). The consume + decode ceiling reads
that backlog first; then `python -m pipeline run` starts as a child process (production
defaults, 6 s session timeout), its VmRSS read from /proc every 0.2 s, until the group's
committed offsets reach the end of every partition (ends from the producer's delivery
reports: Tansu's high watermark is not exact with batches). Then SIGTERM, and the same
command again with the same group: from its /metrics, the restore's seconds, records
read and carts held (carts/s), and its RSS once restored. Nothing is measured in-process.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from .. import logs
from ..compiled import compiled
from ..runtime import topics
from ..source.schemas import load_family
from .bench_parts import _start_emulator, consume_decode_ceiling, stop_emulator
from .bench_process import PipelineProcess, scrape
from .bench_shapes import SEED, cart_backlog
from .broker import EmbeddedBroker, free_port
from .producing import produce_all
from .traffic import Encoder, ShopTraffic, encoded

MIB = 1024


def backlog_records(shape: str, size: int, visitors: int) -> Iterator[tuple[str, bytes]]:
    """The backlog's records: `size` events of traffic, or `size` carts (2 events each)."""
    if shape == "carts":
        return encoded(cart_backlog(size), Encoder(load_family("site_event")))  # type: ignore[arg-type]
    traffic = ShopTraffic(seed=SEED, visitors=visitors, duplicate_rate=0.01, invalid_rate=0.001)
    return itertools.islice(encoded(traffic, Encoder(load_family("site_event"))), size)


def catch_up(
    bootstrap: str, journey_url: str, topic: str, ends: dict[int, int], changelog: bool
) -> dict[str, Any]:
    """`ofsys-pipeline run` until the group has committed every end; its figures."""
    events, partitions = sum(ends.values()), max(ends) + 1
    deadline = time.monotonic() + 120 + events / 1000
    with PipelineProcess(
        bootstrap, topic, f"{topic}-group", journey_url, changelog=changelog
    ) as pipeline:
        pipeline.wait_metric("ofsys_assigned_partitions", 1, deadline)
        assigned = time.time()
        assigned_kib = pipeline.rss.sample()
        done = pipeline.wait_committed(ends, partitions, deadline)
        final_kib = pipeline.rss.sample()
        hwm_kib = pipeline.rss.status_kib().get("VmHWM", 0)
        state = pipeline.metrics()
        watch = pipeline.rss
        code = pipeline.stop()
    return {
        "catch_up_s": round(done - assigned, 2),
        "events_per_s": round(events / (done - assigned)),
        "rss_at_assignment_mib": round(assigned_kib / MIB, 1),
        "peak_rss_mib": round(watch.peak_kib / MIB, 1),
        "peak_at_s": round(watch.peak_at_s, 1),
        "vm_hwm_mib": round(hwm_kib / MIB, 1),
        "final_rss_mib": round(final_kib / MIB, 1),
        "rss_samples": watch.samples,
        "carts": int(state.get("ofsys_state_carts", 0)),
        "event_ids": int(state.get("ofsys_state_event_ids", 0)),
        "dead_letters": int(state.get("ofsys_dead_letters_total", 0)),
        "exit_code": code,
    }


def restore(
    bootstrap: str, journey_url: str, topic: str, partitions: int, timeout_s: float
) -> dict[str, Any]:
    """The same command and group again: restore seconds, records, carts, RSS after.

    The process publishes its carts gauge when it seals a window, and a restored process
    with nothing left to read seals none: one more event (a new cart) makes it seal
    once, and the carts restored are the gauge minus that cart."""
    with PipelineProcess(bootstrap, topic, f"{topic}-group", journey_url) as pipeline:
        deadline = time.monotonic() + timeout_s
        name = "ofsys_state_restore_duration_seconds_count"
        pipeline.wait_metric(name, 1, deadline)
        # every partition assigned: after a second rebalance's restore, if there was one
        # (the gauge is set just after the restore's figures, so wait on it, not them)
        state = pipeline.wait_metric("ofsys_assigned_partitions", partitions, deadline)
        rss_kib = pipeline.rss.sample()
        peak_kib = pipeline.rss.peak_kib
        probe = _probe(bootstrap, topic)
        # Only the probe's partition grew (by one): once its new end is committed, the
        # window that held it has sealed, and the gauges it published count it.
        pipeline.wait_committed(probe, partitions, deadline)
        state = pipeline.metrics()
        code = pipeline.stop()
    seconds = state.get("ofsys_state_restore_duration_seconds_sum", 0.0)
    carts = int(state.get("ofsys_state_carts", 0)) - 1
    return {
        "restore_s": round(seconds, 2),
        "restored_records": int(state.get("ofsys_state_restored_records_total", 0)),
        "restored_carts": carts,
        "event_ids_after_restore": int(state.get("ofsys_state_event_ids", 0)) - 1,
        "restore_carts_per_s": round(carts / seconds) if seconds > 0 else None,
        "rss_after_restore_mib": round(rss_kib / MIB, 1),
        "peak_rss_during_restore_mib": round(peak_kib / MIB, 1),
        "restart_exit_code": code,
    }


def _probe(bootstrap: str, topic: str) -> dict[int, int]:
    """One Added Product event of a new cart; {its partition: its offset + 1}."""
    key, event, _ = next(cart_backlog(1, prefix="restore-probe"))
    placed: dict[int, int] = {}

    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            placed[msg.partition()] = msg.offset() + 1

    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    producer.produce(topic, Encoder(load_family("site_event"))(event), key, on_delivery=delivered)
    if producer.flush(30) or not placed:
        raise RuntimeError("the restore probe was not produced")
    return placed


def _table(rows: list[dict[str, Any]]) -> str:
    columns = (
        ("events", "events", "{:,}"),
        ("catch-up s", "catch_up_s", "{:.1f}"),
        ("events/s", "events_per_s", "{:,}"),
        ("ceiling ev/s", "ceiling_events_per_s", "{:,}"),
        ("ratio", "ratio", "{:.3f}"),
        ("peak RSS MiB", "peak_rss_mib", "{:.1f}"),
        ("final RSS MiB", "final_rss_mib", "{:.1f}"),
        ("carts", "carts", "{:,}"),
        ("event ids", "event_ids", "{:,}"),
        ("restore carts/s", "restore_carts_per_s", "{:,}"),
        ("RSS restored MiB", "rss_after_restore_mib", "{:.1f}"),
    )
    cells = [[title for title, _, _ in columns]]
    for row in rows:
        cells.append(
            [fmt.format(row[key]) if row.get(key) is not None else "-" for _, key, fmt in columns]
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in cells
    )


def run_backlog(
    *,
    sizes: list[int],
    shape: str,
    visitors: int,
    partitions: int,
    changelog: bool,
    journey_latency_ms: float,
) -> int:
    """For each size: produce, ceiling, catch up, restart; a table on stderr, JSON out."""
    logs.setup(os.environ.get("OFSYS_LOG_LEVEL", "WARNING"))
    rows: list[dict[str, Any]] = []
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap
        admin = AdminClient({"bootstrap.servers": bootstrap, "log.connection.close": False})
        for size in sizes:
            topic = f"bench-backlog-{shape}-{size}"
            topics.ensure(admin, topic, partitions)
            started = time.monotonic()
            records = backlog_records(shape, size, visitors)
            ends = produce_all(bootstrap, topic, records, timeout_s=120 + size / 500)
            produce_s = time.monotonic() - started
            events = sum(ends.values())
            ceiling = consume_decode_ceiling(
                bootstrap, partitions, events, 2000, topic=topic, timeout_s=60 + events / 1000
            )
            port = free_port()
            emulator = _start_emulator(port, journey_latency_ms)
            try:
                url = f"http://127.0.0.1:{port}"
                run = catch_up(bootstrap, f"{url}/v1/journey", topic, ends, changelog)
                journey = scrape(f"{url}/metrics")
                restored = (
                    restore(bootstrap, f"{url}/v1/journey", topic, partitions, 120 + size / 1000)
                    if changelog
                    else {}
                )
            finally:
                stop_emulator(emulator)
            row = {
                "shape": shape,
                "size": size,
                "events": events,
                "partitions": partitions,
                "produce_s": round(produce_s, 1),
                "ceiling_events_per_s": round(ceiling),
                "ratio": round(run["events_per_s"] / ceiling, 3),
                **run,
                **restored,
                "commands_accepted": int(journey.get("journey_emulator_accepted_total", 0)),
                "conflicts": int(journey.get("journey_emulator_conflicts_total", 0)),
            }
            rows.append(row)
            sys.stderr.write(f"backlog {size:,}: {orjson.dumps(row).decode()}\n")
    sys.stderr.write(
        "\ncatch-up s and events/s from the first assignment (seen on /metrics) to the last "
        "commit; the ceiling from the first record read to the last\n" + _table(rows) + "\n"
    )
    result: dict[str, Any] = {"mode": "backlog", "compiled": compiled(), "backlog": rows}
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    bad = [r for r in rows if r["conflicts"] or r["exit_code"] != 0]
    return 1 if bad else 0
