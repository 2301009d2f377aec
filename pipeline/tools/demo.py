"""`ofsys-pipeline demo`: the whole product on one machine with no Kafka installed.

Starts the embedded broker, the Journey emulator, the traffic generator and the
pipeline (in this process), serves the pipeline's /metrics, /healthz and /readyz as
`run` does, shows a live view each second, then drains the pipeline like a SIGTERM
would and prints a summary.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from types import FrameType

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from .. import config, logs
from ..metrics import Metrics
from ..runtime import topics
from ..runtime.wiring import build_pipeline
from ..server import Health, serve
from ..source.schemas import load_family
from .broker import EmbeddedBroker
from .emulator import JourneyEmulator
from .producing import client_config, produce
from .traffic import Encoder, ShopTraffic, encoded

DEMO_KEY = "DemoKey0123456789abcdefABCDEF012"
TOPIC = "site-events"


def _total(metrics: Metrics, name: str) -> float:
    return sum(
        sample.value
        for family in metrics.registry.collect()
        if family.name == name
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def _gauge_sum(metrics: Metrics, name: str) -> float:
    return sum(
        sample.value
        for family in metrics.registry.collect()
        if family.name == name
        for sample in family.samples
    )


def _serve_metrics(port: int, metrics: Metrics, health: Health) -> ThreadingHTTPServer:
    """The metrics server on `port` of 127.0.0.1, or on a free port when that is taken
    (a pipeline already running here, say)."""
    try:
        return serve(port, metrics, health, host="127.0.0.1")
    except OSError:
        return serve(0, metrics, health, host="127.0.0.1")


def run_demo(*, duration_s: float, rate: float, metrics_port: int = 9400) -> int:
    logs.setup("WARNING")
    stop = threading.Event()

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    with EmbeddedBroker() as broker, JourneyEmulator(account_key=DEMO_KEY) as journey:
        topics.ensure(AdminClient(client_config(broker.bootstrap)), TOPIC, 4)
        settings = config.load(
            {
                **{k: v for k, v in os.environ.items() if k.startswith("OFSYS_KAFKA_")},
                "OFSYS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "OFSYS_TOPIC": TOPIC,
                "OFSYS_JOURNEY_URL": journey.url,
                "OFSYS_ACCOUNT_KEY": DEMO_KEY,
                "OFSYS_KAFKA_SESSION_TIMEOUT_MS": "6000",
            }
        )
        pipeline, metrics, health = build_pipeline(settings)
        server = _serve_metrics(metrics_port, metrics, health) if metrics_port else None
        runner = threading.Thread(target=pipeline.run, name="pipeline", daemon=True)
        runner.start()
        traffic = ShopTraffic(seed=int(time.time()), duplicate_rate=0.02, invalid_rate=0.005)
        records = encoded(traffic, Encoder(load_family("site_event")))
        producer = Producer(
            client_config(broker.bootstrap, **{"linger.ms": 20, "partitioner": "murmur2_random"})
        )
        count = int(rate * duration_s)
        feeder = threading.Thread(
            target=produce,
            args=(producer, TOPIC, records, count, rate),
            name="generator",
            daemon=True,
        )
        print(
            f"demo: broker {broker.bootstrap}, Journey emulator {journey.url}, "
            f"{rate:.0f} events/s for {duration_s:.0f} s (Ctrl-C stops)"
        )
        if server is not None:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            print(f"demo: the pipeline's metrics: curl {url}/metrics (also /readyz, /healthz)")
        feeder.start()
        started = last_at = time.monotonic()
        last_events = 0.0
        while not stop.wait(1.0) and time.monotonic() - started < duration_s:
            now = time.monotonic()
            events = _total(metrics, "ofsys_events")
            batches = (
                metrics.registry.get_sample_value(
                    "ofsys_journey_batches_total", {"result": "accepted"}
                )
                or 0.0
            )
            print(
                f"  {now - started:5.0f}s  events/s {(events - last_events) / (now - last_at):7.0f}"
                f"  lag {_gauge_sum(metrics, 'ofsys_consumer_lag_messages'):6.0f}"
                f"  batches {batches:5.0f}"
                f"  commands {_total(metrics, 'ofsys_commands_delivered'):7.0f}"
                f"  dead letters {_total(metrics, 'ofsys_dead_letters'):4.0f}",
                flush=True,
            )
            last_events, last_at = events, now
        pipeline.stop()
        runner.join(settings.shutdown_timeout_s + 5)
        if server is not None:
            server.shutdown()
        ledger = journey.ledger()
    delivered = _total(metrics, "ofsys_commands_delivered")
    print(
        "summary: "
        f"events {_total(metrics, 'ofsys_events'):.0f}, "
        f"commands delivered {delivered:.0f}, "
        f"Journey ledger {ledger['accepted']} commands in {ledger['batches']} batches "
        f"({ledger['duplicates_received']} re-sent ids kept once), "
        f"dead letters {_total(metrics, 'ofsys_dead_letters'):.0f}"
    )
    if runner.is_alive() or delivered == 0:
        print("demo: the pipeline did not deliver and drain as expected", file=sys.stderr)
        return 1
    return 0
