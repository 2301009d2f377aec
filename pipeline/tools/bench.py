"""`ofsys-pipeline bench`: end-to-end events/s against the consume + decode ceiling.

Everything runs on this machine, measured in one run so that the ratio holds on a
noisy shared host: the embedded broker, the Journey emulator in its own process, one
pipeline (in this process, as in production). The same pre-produced records are read
in two rounds of: consume + decode alone, the whole pipeline with its changelog, and
without it (in mirrored order in the second round); the best run of each is reported
beside all runs. The
pipeline's time runs from its partition assignment (group join excluded) until every
record is delivered to Journey and committed.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.request
from typing import Any

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from .. import config, logs
from ..runtime import topics
from ..runtime.wiring import build_pipeline
from ..source.schemas import load_family
from .bench_parts import TOPIC, SteadyRate, _start_emulator, consume_decode_ceiling
from .bench_state import restore_rate, simulated_week, state_rss_mb
from .broker import EmbeddedBroker, free_port
from .demo import DEMO_KEY
from .plot import Timeline, write_png
from .producing import produce
from .traffic import Encoder, ShopTraffic, encoded


def end_to_end(
    bootstrap: str,
    journey_url: str,
    events: int,
    changelog: bool,
    run: int,
    *,
    timeline: Timeline | None = None,
) -> tuple[float, dict[str, Any]]:
    """Events/s delivered to Journey and committed, by one pipeline."""
    _reset_journey(journey_url)
    settings = config.load(
        {
            "OFSYS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "OFSYS_TOPIC": TOPIC,
            "OFSYS_JOURNEY_URL": journey_url,
            "OFSYS_ACCOUNT_KEY": DEMO_KEY,
            "OFSYS_GROUP_ID": f"bench-pipeline-{run}",
            "OFSYS_CHANGELOG": str(changelog),
            "OFSYS_METRICS_PORT": "0",
            "OFSYS_KAFKA_SESSION_TIMEOUT_MS": "6000",
        }
    )
    pipeline, metrics, _ = build_pipeline(settings)
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    rate = SteadyRate(events)
    next_sample = 0.0
    while True:
        committed = sum(pipeline.committed().values())
        rate.update(committed)
        if timeline is not None and time.monotonic() >= next_sample:
            timeline.sample(metrics, committed)
            next_sample = time.monotonic() + 0.5
        if committed >= events:
            break
        time.sleep(0.05)  # a coarse poll: the watcher must not compete for the GIL
        if not runner.is_alive():
            raise RuntimeError("the pipeline stopped during the benchmark")
    pipeline.stop()
    runner.join(30)

    def total(name: str) -> int:
        return int(
            sum(
                s.value
                for f in metrics.registry.collect()
                if f.name == name
                for s in f.samples
                if s.name.endswith("_total")
            )
        )

    detail = {
        "commands_delivered": total("ofsys_commands_delivered"),
        "journey_batches": int(
            metrics.registry.get_sample_value("ofsys_journey_batches_total", {"result": "accepted"})
            or 0
        ),
        "dead_letters": total("ofsys_dead_letters"),
    }
    assert rate.rate is not None
    return rate.rate, detail


def _reset_journey(journey_url: str) -> None:
    """Empty the emulator's ledger between runs (it keeps every command it accepted)."""
    request = urllib.request.Request(journey_url.replace("/v1/journey", "/ledger"), method="DELETE")
    with urllib.request.urlopen(request, timeout=10):
        pass


def run_bench(*, events: int, partitions: int, plot: str | None = None) -> int:
    logs.setup(os.environ.get("OFSYS_LOG_LEVEL", "WARNING"))
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap
        topics.ensure(AdminClient({"bootstrap.servers": bootstrap}), TOPIC, partitions)
        traffic = ShopTraffic(seed=7, visitors=5000, duplicate_rate=0.01, invalid_rate=0.001)
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": 50,
                "partitioner": "murmur2_random",
                "batch.num.messages": 10000,
            }
        )
        produce(producer, TOPIC, encoded(traffic, Encoder(load_family("site_event"))), events)
        port = free_port()
        emulator = _start_emulator(port)
        try:
            batch = 2000
            url = f"http://127.0.0.1:{port}/v1/journey"
            # Two rounds, the order of the pipeline runs mirrored in the second, so that
            # drift on a shared machine hits each variant alike; the best of each counts.
            timeline = Timeline() if plot else None
            ceilings: list[float] = []
            with_changelog: list[float] = []
            without: list[float] = []
            for run, order in enumerate(((True, False), (False, True))):
                ceilings.append(consume_decode_ceiling(bootstrap, partitions, events, batch))
                for step, changelog in enumerate(order):
                    rate, detail = end_to_end(
                        bootstrap,
                        url,
                        events,
                        changelog,
                        2 * run + step,
                        timeline=timeline if run == 0 and changelog else None,
                    )
                    (with_changelog if changelog else without).append(rate)
        finally:
            emulator.terminate()
            emulator.wait(10)
        restore = restore_rate(bootstrap, 100_000)
    ceiling, e2e, e2e_memory = max(ceilings), max(with_changelog), max(without)
    result = {
        "events": events,
        "partitions": partitions,
        "end_to_end_events_per_s": round(e2e),
        "consume_decode_events_per_s": round(ceiling),
        "ratio": round(e2e / ceiling, 3),
        "runs": {
            "consume_decode": [round(r) for r in ceilings],
            "end_to_end": [round(r) for r in with_changelog],
            "end_to_end_without_changelog": [round(r) for r in without],
        },
        "end_to_end_without_changelog_events_per_s": round(e2e_memory),
        "changelog_cost": round(1 - e2e / e2e_memory, 3),
        **detail,
        "restore_carts_per_s": round(restore),
        "restore_s_per_100k_carts": round(100_000 / restore, 3),
        "state_at_1m_carts": state_rss_mb(1_000_000),
        "simulated_week": simulated_week(),
    }
    if plot and timeline is not None:
        write_png(
            timeline,
            plot,
            f"ofsys-pipeline bench: {events:,} events, {partitions} "
            f"partitions, one process, changelog on (first round)",
        )
        result["plot"] = plot
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0
