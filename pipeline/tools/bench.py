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

import contextlib
import gc
import os
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from .. import config, logs
from ..errors import DecodeError
from ..runtime import topics
from ..runtime.changelog import Changelog
from ..runtime.outputs import Outputs
from ..runtime.wiring import build_pipeline
from ..source.changes import LineChange
from ..source.decode import SingleObjectDecoder
from ..source.identity import Identity
from ..source.normalise import normalise
from ..source.schemas import load_family
from ..state.partition import PartitionState, Retention
from .broker import EmbeddedBroker, free_port, wait_listening
from .demo import DEMO_KEY
from .plot import Timeline, write_png
from .traffic import Encoder, ShopTraffic, encoded, produce

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
    wait_listening(process, port, "the Journey emulator")
    return process


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


def consume_decode_ceiling(
    bootstrap: str,
    partitions: int,
    events: int,
    batch: int,
    *,
    topic: str = TOPIC,
    timeout_s: float = 600.0,
) -> float:
    """Events/s of consume + decode alone: the pipeline's upper bound on this data."""
    decode = SingleObjectDecoder(load_family("site_event"))
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-ceiling", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen = 0
    rate = SteadyRate(events)
    deadline = time.monotonic() + timeout_s
    while not rate.update(seen):
        if time.monotonic() > deadline:
            consumer.close()
            raise RuntimeError(f"the ceiling read {seen}/{events} records in {timeout_s:.0f} s")
        for msg in consumer.consume(batch, 1.0):
            if msg.error() is None:
                with contextlib.suppress(DecodeError):  # bad records count as read
                    decode(msg.value())  # type: ignore[arg-type]
                seen += 1
    consumer.close()
    assert rate.rate is not None
    return rate.rate


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


def _synthetic_carts(state: PartitionState, carts: int, start: int = 0) -> None:
    """`carts` distinct carts of two lines each, one Added Product event per line."""
    for i in range(start, start + carts):
        cart_id = f"c-{i}"
        for n, (pid, quantity) in enumerate(((i % 200, 1), ((i + 7) % 200, 2))):
            state.apply(
                LineChange(
                    f"{cart_id}-e{n}",
                    1_764_000_000_000 + i,
                    cart_id,
                    f"visitor{i}@example.com",
                    f"sku-{pid}",
                    True,
                    quantity,
                    f"Product {pid}",
                    99.0 + pid,
                )
            )
        if i % 10_000 == 0:
            state.flush()
            state.changes()
    state.flush()


def restore_rate(bootstrap: str, carts: int) -> float:
    """Carts/s restored from a changelog partition holding `carts` carts."""
    settings = config.load(
        {
            "OFSYS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "OFSYS_TOPIC": "bench-restore",
            "OFSYS_GROUP_ID": "bench-restore",
            "OFSYS_JOURNEY_URL": "http://127.0.0.1:1/",
            "OFSYS_ACCOUNT_KEY": DEMO_KEY,
        }
    )
    outputs = Outputs(settings)
    changelog = Changelog(settings, outputs)
    changelog.ensure(AdminClient({"bootstrap.servers": bootstrap}), 1)
    state = PartitionState()
    _synthetic_carts(state, carts)
    changelog.write(
        0,
        [
            (b"c" + cid.encode(), cart if isinstance(cart, bytes) else cart.dump())
            for cid, cart in state.carts.items()
        ],
    )
    outputs.flush(60)
    started = time.perf_counter()
    states, _ = changelog.restore([0])
    elapsed = time.perf_counter() - started
    assert len(states[0].carts) == carts
    return carts / elapsed


def state_rss_mb(carts: int) -> dict[str, float]:
    """RSS of a fresh process before and after holding `carts` distinct carts (with the
    event ids of their events, as within the 24 h replay window)."""
    code = "import sys; from pipeline.tools.bench import _rss_child; _rss_child(int(sys.argv[1]))"
    out = subprocess.run(
        [sys.executable, "-c", code, str(carts)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    figures: dict[str, float] = orjson.loads(out)
    return figures


def _rss_child(carts: int) -> None:
    def rss() -> float:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

    baseline = rss()
    state = PartitionState()
    _synthetic_carts(state, carts)
    state.changes()
    state.compact()  # the first pass forgets which carts were recent,
    state.compact()  # the second keeps every (now idle) cart compact
    gc.collect()
    held = rss()
    sys.stdout.write(
        orjson.dumps(
            {
                "rss_mb": round(held),
                "state_mb": round(held - baseline),
                "carts": len(state.carts),
                "event_ids": len(state.seen),
            }
        ).decode()
    )


def simulated_week(events_per_day: int = 100_000) -> list[dict[str, int]]:
    """State size at the end of each day of a week of shop traffic compressed into
    seconds (event time runs a week; expiry runs on event time). Carts are kept 2 days
    here instead of 30 so that a week shows the plateau; event ids keep their 24 h."""
    day = 86_400_000
    start = 1_764_000_000_000
    clock_ms = [start]
    step = day // events_per_day

    def clock() -> int:
        clock_ms[0] += step
        return clock_ms[0]

    state = PartitionState(Retention(carts_ms=2 * day, event_ids_ms=day, orders_ms=3 * day))
    identity = Identity()
    traffic = iter(ShopTraffic(seed=9, visitors=2000, clock=clock))
    sizes = []
    for number in range(1, 8):
        for n in range(events_per_day):
            _, event, _ = next(traffic)
            if event is not None:
                change = normalise(event, identity, {})
                if change is not None:
                    state.apply(change)
            if n % 5000 == 0:
                state.flush()
                state.changes()
        gc.collect()
        sizes.append(
            {
                "day": number,
                "carts": len(state.carts),
                "event_ids": len(state.seen),
                "orders": len(state.orders),
            }
        )
    return sizes


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
