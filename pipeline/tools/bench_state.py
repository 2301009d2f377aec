"""State-only measurements of the benchmarks, without Kafka delivery: changelog restore
rate, RSS of held carts, a simulated week of state size, and the RSS a backlog's state
alone adds (each RSS figure from a fresh child process)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from typing import Any

import orjson
from confluent_kafka.admin import AdminClient

from .. import config
from ..runtime.changelog import Changelog
from ..runtime.outputs import Outputs
from ..source.changes import LineChange
from ..source.identity import Identity
from ..source.normalise import normalise
from ..state.partition import PartitionState, Retention
from .demo import DEMO_KEY
from .traffic import ShopTraffic

SEED = 7  # the backlog's traffic seed


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
    states, _ = changelog.restore([0], lambda: False)
    elapsed = time.perf_counter() - started
    assert len(states[0].carts) == carts
    return carts / elapsed


def state_rss_mb(carts: int) -> dict[str, float]:
    """RSS of a fresh process before and after holding `carts` distinct carts (with the
    event ids of their events, as within the 24 h replay window)."""
    code = (
        "import sys; from pipeline.tools.bench_state import _rss_child; "
        "_rss_child(int(sys.argv[1]))"
    )
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


def state_only_mib(events: int, visitors: int, partitions: int) -> dict[str, Any]:
    """RSS growth of a bare process (no Kafka, no delivery) folding the same backlog into
    the pipeline's per-partition state: what the state alone costs."""
    code = (
        "import sys; from pipeline.tools.bench_state import _state_child; "
        "_state_child(*sys.argv[1:])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(events), str(visitors), str(partitions)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    figures: dict[str, Any] = orjson.loads(out)
    return figures


def _state_child(events_arg: str, visitors_arg: str, partitions_arg: str) -> None:
    """Fold the backlog's events (as generated, not decoded) into one `PartitionState`
    per partition, keyed as the producer did, closing a window every 10,000 events (about
    one second of catch-up) as the pipeline's seal does; print the RSS it added."""
    import gc

    from .. import config
    from ..errors import InvalidEventError
    from ..runtime.changelog import retention, trigger_settings
    from ..source.identity import Identity
    from ..source.normalise import normalise
    from ..source.partitioner import PARTITIONERS
    from ..state.partition import PartitionState

    events, visitors, partitions = int(events_arg), int(visitors_arg), int(partitions_arg)
    settings = config.load(
        {
            "OFSYS_TOPIC": "t",
            "OFSYS_JOURNEY_URL": "http://127.0.0.1:1/",
            "OFSYS_ACCOUNT_KEY": DEMO_KEY,
        }
    )
    partition_of = PARTITIONERS["murmur2"]
    traffic = iter(
        ShopTraffic(seed=SEED, visitors=visitors, duplicate_rate=0.01, invalid_rate=0.001)
    )
    identity = Identity()
    states = [
        PartitionState(retention(settings), trigger_settings(settings)) for _ in range(partitions)
    ]

    def rss_kib() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

    gc.collect()
    baseline = rss_kib()
    for n in range(1, events + 1):
        key, event, _ = next(traffic)
        if event is not None:
            state = states[partition_of(key.encode(), partitions)]
            try:
                change = normalise(event, identity, {})
                if change is not None:
                    state.apply(change)
            except InvalidEventError:
                pass
        if n % 10_000 == 0 or n == events:
            for state in states:
                state.fire_due(state.stream_ms)
                state.flush()
                state.changes()
    gc.collect()
    sys.stdout.write(
        orjson.dumps(
            {
                "state_mib": round((rss_kib() - baseline) / 1024, 1),
                "carts": sum(len(s.carts) for s in states),
                "event_ids": sum(len(s.seen) for s in states),
            }
        ).decode()
    )
