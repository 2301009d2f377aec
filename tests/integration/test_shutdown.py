"""SIGTERM under one deadline: `ofsys-pipeline run` exits 0 within
OFSYS_SHUTDOWN_TIMEOUT_S (+2 s for the interpreter) even while Journey fails every
request, and commits nothing past what Journey accepted."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.source.schemas import SchemaFamily
from pipeline.tools.broker import EmbeddedBroker
from pipeline.tools.emulator import JourneyEmulator

from .checks import committed, shop_records, wait_committed
from .conftest import PipelineProcess, produce, wait_for

SHUTDOWN_TIMEOUT_S = 6.0
FAULTS: dict[str, dict[str, Any]] = {
    "503": {"error_rate": 1.0, "status": 503},
    "429-retry-after-60": {"error_rate": 1.0, "status": 429, "retry_after": 60},
    "401": {"unauthorized": True},
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_sigterm_exits_in_time_while_journey_fails_every_request(
    broker: EmbeddedBroker,
    journey: JourneyEmulator,
    topic: str,
    family: SchemaFamily,
    start_pipeline: Callable[..., PipelineProcess],
    fault: str,
) -> None:
    group = f"g-{topic}"
    records = shop_records(family, 400, seed=41)
    produce(broker, topic, records[:200])
    pipeline = start_pipeline(
        OFSYS_SHUTDOWN_TIMEOUT_S=str(SHUTDOWN_TIMEOUT_S), OFSYS_FLUSH_INTERVAL_MS="300"
    )
    wait_committed(broker, group, topic, 200, 60, "the first records delivered and committed")
    before = committed(broker, group, topic)
    accepted = journey.counters()["accepted"]

    journey.set_faults(**FAULTS[fault])
    produce(broker, topic, records[200:])
    wait_for(
        lambda: (
            sum(
                pipeline.sample("ofsys_journey_batches_total", result=result)
                for result in ("retried", "unauthorized")
            )
            > 0
        ),
        30,
        "Journey failing the next window",
    )
    signalled = time.monotonic()
    code = pipeline.terminate(timeout_s=SHUTDOWN_TIMEOUT_S + 30)
    elapsed = time.monotonic() - signalled
    print(f"\nSIGTERM to exit with Journey failing ({fault}): {elapsed:.2f} s")

    assert code == 0, pipeline.log()[-3000:]
    assert elapsed <= SHUTDOWN_TIMEOUT_S + 2.0, pipeline.log()[-3000:]
    assert journey.counters()["accepted"] == accepted
    assert committed(broker, group, topic) == before  # nothing past what Journey took
    assert "undelivered windows" in pipeline.log()
