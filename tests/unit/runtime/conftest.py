"""A pipeline on `pipeline.testing`'s fakes, driven turn by turn."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pipeline import config
from pipeline.config import Settings
from pipeline.metrics import Metrics
from pipeline.runtime.loop import Pipeline
from pipeline.server import Health
from pipeline.source.schemas import load_family
from pipeline.testing import FakeOutputs, Fakes, ScriptedJourney, fake_parts
from pipeline.tools.traffic import Encoder, ShopTraffic

TOPIC = "site"
WINDOW_S = 1.0


def settings(**overrides: str) -> Settings:
    return config.load(
        {
            "OFSYS_KAFKA_BOOTSTRAP_SERVERS": "fake:9092",
            "OFSYS_TOPIC": TOPIC,
            "OFSYS_JOURNEY_URL": "http://journey.invalid/v1/journey",
            "OFSYS_ACCOUNT_KEY": "A" * 32,
            "OFSYS_METRICS_PORT": "0",
            "OFSYS_FLUSH_INTERVAL_MS": str(int(WINDOW_S * 1000)),
            "OFSYS_SHUTDOWN_TIMEOUT_S": "10",
            **overrides,
        }
    )


@dataclass
class Rig:
    """One pipeline on fakes."""

    pipeline: Pipeline
    fakes: Fakes
    metrics: Metrics

    def turn(self, times: int = 1) -> None:
        for _ in range(times):
            self.pipeline.turn()

    def window(self) -> None:
        """Let a flush interval pass and take the turn that seals and commits."""
        self.fakes.clock.advance(WINDOW_S)
        self.pipeline.turn()

    def committed(self) -> dict[int, int]:
        return {
            p: offset
            for (topic, p), offset in self.fakes.consumer.group_committed.items()
            if topic == TOPIC
        }


def fill(rig: Rig, records: list[tuple[str, bytes]], *, partitions: int = 1) -> None:
    """Append `records` to the input topic, assign every partition, take one turn."""
    for key, value in records:
        rig.fakes.consumer.add(TOPIC, key, value)
    repartition = rig.pipeline.settings.repartition_topic
    rig.fakes.consumer.assign_next(
        [(TOPIC, p) for p in range(partitions)] + [(repartition, p) for p in range(partitions)]
    )
    rig.turn()  # assigned, restored, consumed


@pytest.fixture(scope="session")
def records() -> list[tuple[str, bytes]]:
    """Shop traffic (keys are cart ids), encoded; the same every run."""
    encode = Encoder(load_family("site_event"))
    out = []
    for key, event, _ in ShopTraffic(seed=7, visitors=40):
        if event is not None:
            out.append((key, encode(event)))
        if len(out) == 600:
            return out
    raise AssertionError("unreachable")


@pytest.fixture
def rig() -> Iterator[Callable[..., Rig]]:
    def make(
        *,
        partitions: int = 1,
        journey: ScriptedJourney | None = None,
        outputs: FakeOutputs | None = None,
        **env: str,
    ) -> Rig:
        s = settings(**env)
        metrics = Metrics()
        fakes = fake_parts(s, metrics, partitions=partitions, journey=journey, outputs=outputs)
        pipeline = Pipeline(s, metrics, Health(poll_stale_s=30), fakes.parts)
        pipeline.start()
        return Rig(pipeline, fakes, metrics)

    yield make


@pytest.fixture(autouse=True)
def gc_policy() -> Iterator[None]:
    """A started pipeline sets the process's GC policy and GIL switch interval (loop.py);
    the suite's stay its own."""
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()
    sys.setswitchinterval(interval)
