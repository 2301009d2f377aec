"""`ofsys-pipeline bench`: the process users run, measured from outside, beside the
consume + decode ceiling measured in the same run on the same records.

On an embedded Tansu broker, `--events` records of the `--shape`'s traffic go to a
fresh topic first. Then each of `--runs` runs reads them twice: consume + fastavro
decode alone (the ceiling, from the first record read to the last), then
`python -m pipeline run` as a child process (production defaults, 6 s session
timeout, changelog on unless `--no-changelog`, a fresh group) delivering to the
Journey emulator in its own process (every response delayed by
`--journey-latency-ms`). The pipeline's time runs from the emulator's receipt of the
first Journey request until the group's committed offsets (read with an AdminClient
every 0.1 s) cover every record; the same from its partition assignment (seen on its
/metrics, every 0.2 s) is reported beside it. Nothing is measured inside the process.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from typing import Any

import orjson
from confluent_kafka.admin import AdminClient

from .. import logs
from ..compiled import compiled
from ..runtime import topics
from ..source.schemas import load_family
from .bench_parts import (
    TOPIC,
    _start_emulator,
    consume_decode_ceiling,
    emulator_json,
    loop_thread_cpu_s,
    stop_emulator,
)
from .bench_process import PipelineProcess, scrape
from .bench_shapes import latency_ms, paced, restamped, traffic
from .broker import EmbeddedBroker, free_port
from .producing import produce_all
from .traffic import Encoder, encoded

TARGET_EVENTS_PER_S = 45_000  # issue 12's targets, one process, changelog on
TARGET_RATIO = 0.5


def _now_ms() -> int:
    return int(time.time() * 1000)


def _records(shape: str) -> Any:
    return encoded(traffic(shape), Encoder(load_family("site_event")))


def one_run(
    bootstrap: str, ends: dict[int, int], partitions: int, run: int, options: dict[str, Any]
) -> dict[str, Any]:
    """The ceiling, then one pipeline process over the same records; the run's figures."""
    events = sum(ends.values())
    ceiling = consume_decode_ceiling(bootstrap, partitions, events, 2000)
    with_cavro = consume_decode_ceiling(bootstrap, partitions, events, 2000, fastavro_only=False)
    port = free_port()
    emulator = _start_emulator(port, options["journey_latency_ms"])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120 + events / 500
    try:
        with PipelineProcess(
            bootstrap, TOPIC, f"bench-{run}", f"{base}/v1/journey", changelog=options["changelog"]
        ) as pipeline:
            pipeline.wait_metric("ofsys_assigned_partitions", 1, deadline)
            assigned = time.time()
            done = pipeline.wait_committed(ends, partitions, deadline)
            figures = pipeline.metrics()
            loop_cpu_s = loop_thread_cpu_s(pipeline.process.pid)
            peak_mib = pipeline.rss.peak_kib / 1024
            code = pipeline.stop()
        first = emulator_json(f"{base}/receipts")["first_request_ms"] / 1000
        journey = scrape(f"{base}/metrics")
    finally:
        stop_emulator(emulator)
    rate = events / (done - first)
    return {
        "run": run + 1,
        "events_per_s": round(rate),
        "ceiling_events_per_s": round(ceiling),
        "ratio": round(rate / ceiling, 3),
        "ceiling_with_pipeline_decoder_events_per_s": round(with_cavro),
        "from_assignment_events_per_s": round(events / (done - assigned)),
        "first_request_after_assignment_s": round(first - assigned, 2),
        "seconds": round(done - first, 2),
        "met_target": rate >= TARGET_EVENTS_PER_S and rate / ceiling >= TARGET_RATIO,
        "commands_accepted": int(journey.get("journey_emulator_accepted_total", 0)),
        "journey_requests": int(journey.get("journey_emulator_requests_total", 0)),
        "conflicts": int(journey.get("journey_emulator_conflicts_total", 0)),
        "dead_letters": int(figures.get("ofsys_dead_letters_total", 0)),
        "peak_rss_mib": round(peak_mib, 1),
        # the pipeline's own CPU seconds once its commits covered every record (its
        # process_cpu_seconds_total): steadier than a rate for comparing two builds
        "cpu_s": round(figures.get("process_cpu_seconds_total", 0.0), 2),
        # of it, the loop thread's (/proc, read then too): the rest is the delivery
        # lanes' and librdkafka's threads
        "loop_thread_cpu_s": round(loop_cpu_s, 2),
        "exit_code": code,
    }


def run_bench(
    *,
    shape: str,
    events: int,
    partitions: int,
    runs: int,
    journey_latency_ms: float,
    changelog: bool,
) -> int:
    """Produce once, then `runs` runs of ceiling + pipeline; a table on stderr, JSON out."""
    logs.setup(os.environ.get("OFSYS_LOG_LEVEL", "WARNING"))
    options = {"journey_latency_ms": journey_latency_ms, "changelog": changelog}
    with EmbeddedBroker() as broker:
        topics.ensure(AdminClient({"bootstrap.servers": broker.bootstrap}), TOPIC, partitions)
        records = (r for _, r in zip(range(events), _records(shape), strict=False))
        ends = produce_all(broker.bootstrap, TOPIC, records, timeout_s=120 + events / 1000)
        rows = []
        for run in range(runs):
            rows.append(one_run(broker.bootstrap, ends, partitions, run, options))
            sys.stderr.write(f"run {run + 1}/{runs}: {orjson.dumps(rows[-1]).decode()}\n")
    best = max(rows, key=lambda r: r["events_per_s"])
    result = {
        "mode": "throughput",
        "shape": shape,
        "events": events,
        "partitions": partitions,
        "changelog": changelog,
        "journey_latency_ms": journey_latency_ms,
        "timed_from": "first Journey request (emulator receipt)",
        "compiled": compiled(),
        "best_run": best["run"],
        "events_per_s": best["events_per_s"],
        "ceiling_events_per_s": best["ceiling_events_per_s"],
        "ratio": best["ratio"],
        "events_per_s_by_run": [r["events_per_s"] for r in rows],
        "ratio_by_run": [r["ratio"] for r in rows],
        "target": {"events_per_s": TARGET_EVENTS_PER_S, "ratio": TARGET_RATIO},
        "runs_meeting_target": sum(r["met_target"] for r in rows),
        "runs_meeting_ratio": sum(r["ratio"] >= TARGET_RATIO for r in rows),
        "runs": rows,
    }
    sys.stderr.write(_table(rows) + "\n")
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 1 if any(r["conflicts"] or r["exit_code"] != 0 for r in rows) else 0


def run_rate(
    *,
    shape: str,
    rate: float,
    duration_s: float,
    partitions: int,
    journey_latency_ms: float,
    changelog: bool,
) -> int:
    """The pipeline running first, then `rate` events/s produced live for `duration_s`:
    end-to-end latency (event timestamp to the emulator's receipt) per command."""
    logs.setup(os.environ.get("OFSYS_LOG_LEVEL", "WARNING"))
    count = int(rate * duration_s)
    # made (and encoded) before anything is timed; each is stamped when it is sent
    made = list(itertools.islice(_records(shape), count))
    with EmbeddedBroker() as broker:
        topics.ensure(AdminClient({"bootstrap.servers": broker.bootstrap}), TOPIC, partitions)
        port = free_port()
        emulator = _start_emulator(port, journey_latency_ms)
        base = f"http://127.0.0.1:{port}"
        try:
            with PipelineProcess(
                broker.bootstrap, TOPIC, "bench-rate", f"{base}/v1/journey", changelog=changelog
            ) as pipeline:
                deadline = time.monotonic() + 120
                pipeline.wait_metric("ofsys_assigned_partitions", 1, deadline)
                started = time.monotonic()
                records = paced(restamped(iter(made), _now_ms), rate, count)
                ends = produce_all(
                    broker.bootstrap, TOPIC, records, timeout_s=60 + duration_s, **{"linger.ms": 5}
                )
                produced_s = time.monotonic() - started
                pipeline.wait_committed(ends, partitions, time.monotonic() + 120 + count / 1000)
                peak_mib = pipeline.rss.peak_kib / 1024
                code = pipeline.stop()
            receipts = emulator_json(f"{base}/receipts")["receipts"]
            journey = scrape(f"{base}/metrics")
        finally:
            stop_emulator(emulator)
    result = {
        "mode": "rate",
        "compiled": compiled(),
        "shape": shape,
        "rate": rate,
        "duration_s": duration_s,
        "events": count,
        "produced_events_per_s": round(count / produced_s),
        "partitions": partitions,
        "changelog": changelog,
        "journey_latency_ms": journey_latency_ms,
        "latency": latency_ms(receipts),
        "latency_method": "emulator receipt time - command ts (the source event's timestamp, "
        "stamped when the producer sent it)",
        "conflicts": int(journey.get("journey_emulator_conflicts_total", 0)),
        "peak_rss_mib": round(peak_mib, 1),
        "exit_code": code,
    }
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 1 if result["conflicts"] or code != 0 else 0


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("run", "events/s", "ceiling", "ratio", "from assignment", "target met", "peak RSS")
    keys = ("run", "events_per_s", "ceiling_events_per_s", "ratio")
    lines = ["  ".join(head)]
    for r in rows:
        cells = [str(r[k]) for k in keys]
        cells += [str(r["from_assignment_events_per_s"]), str(r["met_target"])]
        lines.append("  ".join([*cells, f"{r['peak_rss_mib']} MiB"]))
    return "\n".join(lines)
