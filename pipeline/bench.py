"""`ofsys-pipeline bench`: end-to-end events/s against the consume + decode ceiling.

Everything runs on this machine, measured in one run so that the ratio holds on a
noisy shared host: the embedded broker, the Journey emulator in its own process, one
pipeline (in this process, as in production). The same pre-produced records are read
three times: consume + decode alone, the whole pipeline, consume + decode again. The
pipeline's time runs from its partition assignment (group join excluded) until every
record is delivered to Journey and committed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from . import config, logs, topics
from .app import Pipeline
from .broker import EmbeddedBroker, free_port
from .decode import SingleObjectDecoder
from .demo import DEMO_KEY
from .errors import DecodeError
from .metrics import Metrics
from .produce import Encoder, ShopTraffic, encoded, produce
from .schemas import load_family
from .server import Health

TOPIC = "bench-events"


def _start_emulator(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "journey-emulator",
            "--port",
            str(port),
            "--account-key",
            DEMO_KEY,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import socket

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the Journey emulator did not start")


class SteadyRate:
    """Events/s between 10% and 90% of the run: start-up (group join, first fetch) and
    the last flush window's wait are the same for any code, so they are left out."""

    def __init__(self, total: int) -> None:
        self._low, self._high = total * 0.1, total * 0.9
        self._t_low: float | None = None
        self.rate: float | None = None

    def update(self, done: float) -> bool:
        now = time.perf_counter()
        if self._t_low is None and done >= self._low:
            self._t_low = now
        if self._t_low is not None and done >= self._high:
            self.rate = (self._high - self._low) / max(now - self._t_low, 1e-9)
            return True
        return False


def consume_decode_ceiling(bootstrap: str, partitions: int, events: int, batch: int) -> float:
    """Events/s of consume + decode alone: the pipeline's upper bound on this data."""
    decode = SingleObjectDecoder(load_family("site_event"))
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-ceiling", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(partitions)])
    seen = 0
    rate = SteadyRate(events)
    while not rate.update(seen):
        for msg in consumer.consume(batch, 1.0):
            if msg.error() is None:
                with contextlib.suppress(DecodeError):  # bad records count as read
                    decode(msg.value())  # type: ignore[arg-type]
                seen += 1
    consumer.close()
    assert rate.rate is not None
    return rate.rate


def end_to_end(bootstrap: str, journey_url: str, events: int) -> tuple[float, dict[str, Any]]:
    """Events/s delivered to Journey and committed, by one pipeline."""
    settings = config.load(
        {
            "OFSYS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "OFSYS_TOPIC": TOPIC,
            "OFSYS_JOURNEY_URL": journey_url,
            "OFSYS_ACCOUNT_KEY": DEMO_KEY,
            "OFSYS_GROUP_ID": "bench-pipeline",
            "OFSYS_METRICS_PORT": "0",
            "OFSYS_KAFKA_SESSION_TIMEOUT_MS": "6000",
        }
    )
    metrics = Metrics()
    pipeline = Pipeline(settings, metrics, Health(poll_stale_s=30))
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    rate = SteadyRate(events)
    while not rate.update(sum(pipeline.committed().values())):
        time.sleep(0.05)  # a coarse poll: the watcher must not compete for the GIL
        if not runner.is_alive():
            raise RuntimeError("the pipeline stopped during the benchmark")
    while sum(pipeline.committed().values()) < events:
        time.sleep(0.05)
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


def run_bench(*, events: int, partitions: int) -> int:
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
            before = consume_decode_ceiling(bootstrap, partitions, events, batch)
            e2e, detail = end_to_end(bootstrap, f"http://127.0.0.1:{port}/v1/journey", events)
            after = consume_decode_ceiling(bootstrap, partitions, events, batch)
        finally:
            emulator.terminate()
            emulator.wait(10)
    ceiling = (before + after) / 2
    result = {
        "events": events,
        "partitions": partitions,
        "end_to_end_events_per_s": round(e2e),
        "consume_decode_events_per_s": round(ceiling),
        "ratio": round(e2e / ceiling, 3),
        "ceiling_runs": [round(before), round(after)],
        **detail,
    }
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0
