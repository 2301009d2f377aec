"""ratelimit: the token buckets, each member's share, and delivery held back by them.

Driven by a settable clock: a sender that asks `delay` and waits what it says must
send at the member's share of the limit, whatever the batch sizes.
"""

from __future__ import annotations

import random

import orjson
import pytest
from prometheus_client import CollectorRegistry

from pipeline.journey.batch import Batch
from pipeline.journey.delivery import Delivery
from pipeline.journey.ratelimit import BURST_S, RateLimit, from_limits
from pipeline.metrics import Metrics
from pipeline.testing import FakeClock
from tests.unit.journey.test_delivery import FakeTransport, command


def sent_in(limit: RateLimit, clock: FakeClock, seconds: float, batch: int) -> tuple[int, int]:
    """Requests and commands a sender of `batch`-command requests gets out in `seconds`."""
    end = clock.now + seconds
    requests = commands = 0
    while clock.now < end:
        wait = limit.delay(batch)
        if wait:
            clock.advance(wait)
        else:
            requests += 1
            commands += batch
    return requests, commands


def test_no_limit_is_none() -> None:
    assert from_limits(0, 0) is None
    assert from_limits(10, 0) is not None


@pytest.mark.parametrize(
    ("assigned", "total", "expected"), [(4, 4, 100.0), (2, 4, 50.0), (1, 3, 100 / 3), (0, 4, 0.0)]
)
def test_each_member_takes_its_partitions_share(assigned: int, total: int, expected: float) -> None:
    limit = RateLimit(100, 1000, clock=FakeClock().monotonic)
    limit.share(assigned, total)
    assert limit.rates() == pytest.approx((expected, expected * 10))


def test_requests_per_second_hold_over_a_minute() -> None:
    clock = FakeClock()
    limit = RateLimit(20, 0, clock=clock.monotonic)
    limit.share(2, 4)  # 10 requests/s for this member
    requests, _ = sent_in(limit, clock, 60.0, batch=3)
    # at most the rate times the interval, plus the bucket's depth and one request
    assert 600 <= requests <= 600 + 10 * BURST_S + 1


@pytest.mark.parametrize("batch", [1, 7, 500])
def test_commands_per_second_hold_even_for_batches_larger_than_the_bucket(batch: int) -> None:
    clock = FakeClock()
    limit = RateLimit(0, 200, clock=clock.monotonic)
    limit.share(1, 4)  # 50 commands/s: a batch of 500 is ten seconds' worth
    _, commands = sent_in(limit, clock, 60.0, batch=batch)
    assert 3000 - batch <= commands <= 3000 + 50 * BURST_S + batch


def test_a_new_share_applies_to_what_follows() -> None:
    clock = FakeClock()
    limit = RateLimit(40, 0, clock=clock.monotonic)
    first, _ = sent_in(limit, clock, 30.0, batch=1)
    limit.share(1, 4)
    second, _ = sent_in(limit, clock, 30.0, batch=1)
    assert first == pytest.approx(1200, abs=41)
    assert second == pytest.approx(300, abs=11)


def test_no_partitions_no_requests_and_waits_stay_short() -> None:
    clock = FakeClock()
    limit = RateLimit(10, 0, clock=clock.monotonic)
    limit.share(0, 4)
    limit.delay(1)  # the balance may start at zero: one goes, then debt
    assert 0 < limit.delay(1) <= 0.5  # sliced, so a new share is seen soon


def test_delivery_waits_for_its_share_and_counts_the_seconds() -> None:
    clock = FakeClock()
    limit = RateLimit(5, 0, clock=clock.monotonic)
    metrics = Metrics(CollectorRegistry())
    transport = FakeTransport()
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    delivery = Delivery(
        transport,
        metrics,
        max_backoff_s=1.0,
        wait=wait,
        dead_letter=lambda c, message: None,
        rng=random.Random(1),
        limit=limit,
    )
    started = clock.now
    for n in range(21):
        commands = [command(n)]
        delivery.deliver(Batch(commands, [orjson.dumps(c) for c in commands]))
    assert len(transport.sent) == 21
    assert clock.now - started == pytest.approx(4.0, abs=0.01)  # 5/s: 20 gaps of 0.2 s
    throttled = metrics.registry.get_sample_value("ofsys_journey_throttled_seconds_total")
    assert throttled == pytest.approx(sum(waits))
    assert throttled == pytest.approx(4.0, abs=0.01)


def test_a_429_with_retry_after_still_applies_on_top() -> None:
    from pipeline.errors import TransientDeliveryError

    clock = FakeClock()
    limit = RateLimit(100, 0, clock=clock.monotonic)
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    throttled = TransientDeliveryError("429", reason="throttled", retry_after=7.0, status=429)
    transport = FakeTransport(throttled)
    delivery = Delivery(
        transport,
        Metrics(CollectorRegistry()),
        max_backoff_s=1.0,
        wait=wait,
        dead_letter=lambda c, message: None,
        limit=limit,
    )
    commands = [command(1)]
    delivery.deliver(Batch(commands, [orjson.dumps(c) for c in commands]))
    assert len(transport.sent) == 2
    assert 7.0 in waits  # Journey's Retry-After, whatever the share allowed
