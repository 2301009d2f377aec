"""`ofsys-pipeline bench --backlog N[,N...]`: peak RSS of `ofsys-pipeline run`, as its
own process watched from outside, while it catches up a backlog.

For each N, on the embedded broker and a fresh Journey emulator (its own process): N
events of `ShopTraffic` (UUID event ids, 1 % replays, 0.1 % bad records, the same seed
and the same number of visitors for every N, so a smaller backlog is a prefix of a
larger one) go to a fresh topic before the pipeline starts. The consume + decode
ceiling reads that backlog first; then `python -m pipeline run` starts as a child
process with the production defaults (1 s windows, changelog on) and a 6 s session
timeout, its VmRSS is read from /proc/<pid>/status every 0.2 s, and the run ends when
the group's committed offsets reach the end of every partition (ends taken from the
producer's delivery reports: Tansu's high watermark is not exact with batches).
Last, a bare child process folds the same events into the same per-partition state
(no Kafka, no delivery) and reports the RSS that adds: what the state alone costs, to
set beside the growth of the pipeline's peak between backlog sizes.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

import orjson
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from .. import logs
from ..runtime import topics
from ..source.schemas import load_family
from .bench_parts import SAMPLE_S, RssWatch, SteadyRate, _start_emulator, consume_decode_ceiling
from .bench_state import SEED, state_only_mib
from .broker import EmbeddedBroker, free_port
from .demo import DEMO_KEY
from .producing import produce_all
from .traffic import Encoder, ShopTraffic, encoded

MIB = 1024 * 1024
COMMITTED_POLL_S = 0.25


def produce_backlog(
    bootstrap: str, topic: str, events: int, visitors: int
) -> tuple[dict[int, int], float]:
    """Produce `events` records of shop traffic; each partition's end offset (from the
    delivery reports) and the seconds it took."""
    started = time.monotonic()
    traffic = ShopTraffic(seed=SEED, visitors=visitors, duplicate_rate=0.01, invalid_rate=0.001)
    records = itertools.islice(encoded(traffic, Encoder(load_family("site_event"))), events)
    ends = produce_all(bootstrap, topic, records, timeout_s=120 + events / 1000)
    return ends, time.monotonic() - started


def _committed(admin: AdminClient, group: str, topic: str, partitions: int) -> dict[int, int]:
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(partitions)]
    )
    try:
        result = admin.list_consumer_group_offsets([request])[group].result(10)
    except Exception:  # the broker may be busy: the caller polls again
        return {}
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def _scrape(url: str) -> dict[str, float]:
    """Every sample of a Prometheus endpoint, summed by sample name (over labels)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + float(sample.value)
    return sums


def _child_env(
    bootstrap: str, topic: str, group: str, journey_url: str, port: int
) -> dict[str, str]:
    """The environment without inherited OFSYS_ settings, plus the run's own: the
    production defaults except a short session timeout, as the integration tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFSYS_")}
    env.update(
        {
            "OFSYS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "OFSYS_TOPIC": topic,
            "OFSYS_GROUP_ID": group,
            "OFSYS_JOURNEY_URL": journey_url,
            "OFSYS_ACCOUNT_KEY": DEMO_KEY,
            "OFSYS_METRICS_PORT": str(port),
            "OFSYS_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "OFSYS_LOG_LEVEL": "WARNING",
        }
    )
    return env


def catch_up(
    bootstrap: str, journey_url: str, topic: str, ends: dict[int, int], timeout_s: float
) -> dict[str, Any]:
    """Run `ofsys-pipeline run` until the group has committed every end; its figures."""
    events = sum(ends.values())
    group = f"{topic}-group"
    port = free_port()
    admin = AdminClient({"bootstrap.servers": bootstrap, "log.connection.close": False})
    partitions = topics.partitions(admin, topic) or 1
    stderr = tempfile.NamedTemporaryFile(prefix="ofsys-backlog-", suffix=".log", delete=False)  # noqa: SIM115
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run"],
        env=_child_env(bootstrap, topic, group, journey_url, port),
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    watch = RssWatch(process.pid)
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    rate = SteadyRate(events)
    assigned_at: float | None = None
    assigned_kib = 0
    deadline = started + timeout_s
    committed = 0
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the pipeline exited with {process.returncode}: {_tail(stderr)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"not caught up after {timeout_s:.0f} s ({committed}/{events} committed): "
                    f"{_tail(stderr)}"
                )
            if assigned_at is None:
                try:
                    if _scrape(metrics_url).get("ofsys_assigned_partitions", 0) > 0:
                        assigned_at = time.monotonic()
                        assigned_kib = watch.sample()
                except OSError:  # not serving yet
                    pass
                time.sleep(SAMPLE_S)
                continue
            offsets = _committed(admin, group, topic, partitions)
            committed = sum(offsets.values())
            rate.update(committed)
            if all(offsets.get(p, -1) >= end for p, end in ends.items() if end > 0):
                caught_at = time.monotonic()
                break
            time.sleep(COMMITTED_POLL_S)
        assert assigned_at is not None
        final_kib = watch.sample()
        hwm_kib = watch.status_kib().get("VmHWM", 0)
        state = _scrape(metrics_url)
    finally:
        watch.stop()
        code = _stop(process)
        stderr.close()
    os.unlink(stderr.name)
    return {
        "assignment_s": round(assigned_at - started, 2),
        "catch_up_s": round(caught_at - assigned_at, 2),
        "catch_up_s_from_start": round(caught_at - started, 2),
        "events_per_s": round(events / (caught_at - assigned_at)),
        "steady_events_per_s": round(rate.rate) if rate.rate is not None else None,
        "rss_at_assignment_mib": round(assigned_kib / 1024, 1),
        "peak_rss_mib": round(watch.peak_kib / 1024, 1),
        "peak_at_s": round(watch.peak_at_s, 1),
        "vm_hwm_mib": round(hwm_kib / 1024, 1),
        "final_rss_mib": round(final_kib / 1024, 1),
        "rss_samples": watch.samples,
        "carts": int(state.get("ofsys_state_carts", 0)),
        "event_ids": int(state.get("ofsys_state_event_ids", 0)),
        "dead_letters": int(state.get("ofsys_dead_letters_total", 0)),
        "exit_code": code,
    }


def _stop(process: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM (the pipeline drains and leaves the group), SIGKILL after 60 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            return None
    return process.returncode


def _tail(log: Any) -> str:
    log.flush()
    with open(log.name, "rb") as read:
        return read.read()[-2000:].decode(errors="replace")


def _table(rows: list[dict[str, Any]]) -> str:
    columns = (
        ("events", "events", "{:,}"),
        ("catch-up s", "catch_up_s", "{:.1f}"),
        ("events/s", "events_per_s", "{:,}"),
        ("10-90% ev/s", "steady_events_per_s", "{:,}"),
        ("ceiling ev/s", "ceiling_events_per_s", "{:,}"),
        ("ratio", "ratio", "{:.3f}"),
        ("RSS at assignment MiB", "rss_at_assignment_mib", "{:.1f}"),
        ("peak RSS MiB", "peak_rss_mib", "{:.1f}"),
        ("VmHWM MiB", "vm_hwm_mib", "{:.1f}"),
        ("final RSS MiB", "final_rss_mib", "{:.1f}"),
        ("state alone MiB", "state_only_mib", "{:.1f}"),
        ("carts", "carts", "{:,}"),
        ("event ids", "event_ids", "{:,}"),
        ("conflicts", "conflicts", "{}"),
    )
    cells = [[title for title, _, _ in columns]]
    for row in rows:
        cells.append(
            [fmt.format(row[key]) if row[key] is not None else "-" for _, key, fmt in columns]
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in cells
    )


def run_backlog(*, sizes: list[int], visitors: int, partitions: int) -> int:
    """For each backlog size: produce, ceiling, catch up; a table on stderr, JSON on stdout."""
    logs.setup(os.environ.get("OFSYS_LOG_LEVEL", "WARNING"))
    rows: list[dict[str, Any]] = []
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap
        admin = AdminClient({"bootstrap.servers": bootstrap, "log.connection.close": False})
        for events in sizes:
            topic = f"bench-backlog-{events}"
            topics.ensure(admin, topic, partitions)
            ends, produce_s = produce_backlog(bootstrap, topic, events, visitors)
            ceiling = consume_decode_ceiling(
                bootstrap, partitions, events, 2000, topic=topic, timeout_s=60 + events / 1000
            )
            port = free_port()
            emulator = _start_emulator(port)
            try:
                url = f"http://127.0.0.1:{port}"
                run = catch_up(bootstrap, f"{url}/v1/journey", topic, ends, 120 + events / 1000)
                journey = _scrape(f"{url}/metrics")
            finally:
                emulator.terminate()
                emulator.wait(10)
            state = state_only_mib(events, visitors, partitions)
            steady = run["steady_events_per_s"]
            row = {
                "events": events,
                "partitions": partitions,
                "visitors": visitors,
                "produce_s": round(produce_s, 1),
                "ceiling_events_per_s": round(ceiling),
                "ratio": round(steady / ceiling, 3) if steady else None,
                **run,
                "commands_accepted": int(journey.get("journey_emulator_accepted_total", 0)),
                "conflicts": int(journey.get("journey_emulator_conflicts_total", 0)),
                "state_only_mib": state["state_mib"],
                "state_only_carts": state["carts"],
                "state_only_event_ids": state["event_ids"],
            }
            rows.append(row)
            sys.stderr.write(f"backlog {events:,}: {orjson.dumps(row).decode()}\n")
    sys.stderr.write(
        "\ncatch-up s and events/s from the first assignment (seen on /metrics) to the last "
        "commit; 10-90% ev/s and the ceiling between 10 % and 90 % of the records\n"
        + _table(rows)
        + "\n"
    )
    result: dict[str, Any] = {"backlog": rows}
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        result["peak_rss_growth_mib"] = round(last["peak_rss_mib"] - first["peak_rss_mib"], 1)
        result["state_only_growth_mib"] = round(last["state_only_mib"] - first["state_only_mib"], 1)
        result["event_ids_growth"] = last["event_ids"] - first["event_ids"]
        result["carts_growth"] = last["carts"] - first["carts"]
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    bad = [r for r in rows if r["conflicts"] or r["exit_code"] != 0]
    return 1 if bad else 0
