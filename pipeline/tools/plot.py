"""A picture of a benchmark run: throughput, lag and latency over time, as a PNG.

matplotlib is an optional extra (`pip install 'ofsys-pipeline[plot]'`): a plotting
library is the one thing here no hand-written code should replace, and the service
itself never needs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..metrics import LATENCY_BUCKETS, Metrics


@dataclass
class Timeline:
    """Samples of one run, taken by the benchmark's watcher every half second."""

    started: float = field(default_factory=time.monotonic)
    seconds: list[float] = field(default_factory=list)
    committed: list[int] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    buckets: list[list[float]] = field(default_factory=list)

    def sample(self, metrics: Metrics, committed: int) -> None:
        registry = metrics.registry
        self.seconds.append(time.monotonic() - self.started)
        self.committed.append(committed)
        self.lag.append(
            sum(
                s.value
                for f in registry.collect()
                if f.name == "ofsys_consumer_lag_messages"
                for s in f.samples
            )
        )
        self.buckets.append(
            [
                registry.get_sample_value(
                    "ofsys_end_to_end_latency_seconds_bucket", {"le": str(bound)}
                )
                or 0.0
                for bound in LATENCY_BUCKETS
            ]
        )


def _quantile(before: list[float], after: list[float], q: float) -> float | None:
    """The upper bound of the bucket holding quantile q of what was observed between."""
    total = after[-1] - before[-1]
    if total <= 0:
        return None
    for bound, now, then in zip(LATENCY_BUCKETS, after, before, strict=True):
        if now - then >= q * total:
            return bound
    return LATENCY_BUCKETS[-1]


def write_png(timeline: Timeline, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = timeline.seconds
    rate = [0.0] + [
        (c1 - c0) / max(t1 - t0, 1e-9)
        for c0, c1, t0, t1 in zip(
            timeline.committed, timeline.committed[1:], t, t[1:], strict=False
        )
    ]
    p50 = [None] + [
        _quantile(b0, b1, 0.5)
        for b0, b1 in zip(timeline.buckets, timeline.buckets[1:], strict=False)
    ]
    p95 = [None] + [
        _quantile(b0, b1, 0.95)
        for b0, b1 in zip(timeline.buckets, timeline.buckets[1:], strict=False)
    ]
    figure, (top, middle, bottom) = plt.subplots(3, 1, sharex=True, figsize=(9, 8))
    figure.suptitle(title)
    top.plot(t, rate, color="tab:blue")
    top.set_ylabel("events/s delivered\nand committed")
    middle.plot(t, timeline.lag, color="tab:orange")
    middle.set_ylabel("lag (messages)")
    bottom.step(t, [v if v is not None else float("nan") for v in p50], where="post", label="p50")
    bottom.step(t, [v if v is not None else float("nan") for v in p95], where="post", label="p95")
    bottom.set_ylabel("end-to-end latency (s,\nbucket upper bound)")
    bottom.set_xlabel("seconds since the pipeline started")
    bottom.legend(loc="upper left")
    for axis in (top, middle, bottom):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
