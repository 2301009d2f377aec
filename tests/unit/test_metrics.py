"""metrics: a batch's latencies counted per bucket equal observing them one by one."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram

from pipeline.metrics import LATENCY_BUCKETS, observe_many


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_observe_many_equals_observing_each_value() -> None:
    rng = random.Random(3)
    values = [rng.choice((0.0, 1.0, 2.5, 1e9)) for _ in range(50)]
    values += [rng.uniform(-1, 120) for _ in range(2000)] + list(LATENCY_BUCKETS)
    one, many = CollectorRegistry(), CollectorRegistry()
    each = Histogram("h", "h", buckets=LATENCY_BUCKETS, registry=one)
    batch = Histogram("h", "h", buckets=LATENCY_BUCKETS, registry=many)
    for value in values:
        each.observe(value)
    observe_many(batch, values[:700])
    observe_many(batch, values[700:])
    observe_many(batch, [])
    expected, got = _samples(one), _samples(many)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert abs(got[key] - value) <= 1e-6 * max(1.0, abs(value)), key
