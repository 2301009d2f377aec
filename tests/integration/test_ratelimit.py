"""The Journey rate limit shared by the group: two `ofsys-pipeline run` members on four
partitions against the Journey emulator.

The group's total is measured over a minute: each member's token bucket can run ahead
of its share by at most one second's worth plus one request, so two members at 10
requests/s each can exceed 20 requests/s by at most 22 requests in any interval: 1.8%
of a minute's 1,200, inside the 10% checked.
"""

from __future__ import annotations

import time

from .checks import shop_records
from .conftest import Harness, PipelineProcess, wait_for

LIMIT = 20.0  # requests per second, for the whole group
MEASURE_S = 60.0


def sent(member: PipelineProcess) -> float:
    return sum(
        member.sample("ofsys_journey_batches_total", result=result)
        for result in ("accepted", "rejected", "retried", "unauthorized")
    )


def assigned(members: list[PipelineProcess]) -> list[float]:
    return [m.sample("ofsys_assigned_partitions") for m in members]


def test_two_members_hold_the_groups_total_to_the_limit(harness: Harness) -> None:
    limited = harness.env(
        OFSYS_JOURNEY_MAX_REQUESTS_PER_S=str(LIMIT),
        OFSYS_BATCH_MAX_COMMANDS="2",  # many small requests: the limit, not Journey, binds
        OFSYS_FLUSH_INTERVAL_MS="300",
    )
    members = [harness.spawn(limited) for _ in range(2)]
    wait_for(lambda: assigned(members) == [2.0, 2.0], 60, "two members with 2 partitions each")
    records = shop_records(harness.family, 6000, seed=71)
    harness.produce(records)  # a backlog: far more than a minute of requests at the limit
    time.sleep(3)  # both members delivering
    before, started = harness.journey.counters()["requests"], time.monotonic()
    each = [sent(m) for m in members]
    time.sleep(MEASURE_S)
    after, elapsed = harness.journey.counters()["requests"], time.monotonic() - started
    each = [(sent(m) - b) / elapsed for m, b in zip(members, each, strict=True)]
    rate = (after - before) / elapsed
    print(
        f"group: {rate:.2f} requests/s over {elapsed:.1f} s against a limit of {LIMIT:g}; "
        f"members: {', '.join(f'{r:.2f}' for r in each)}"
    )
    assert abs(rate - LIMIT) <= 0.1 * LIMIT, rate
    for member_rate in each:  # each its partitions' share: 2 of 4
        assert abs(member_rate - LIMIT / 2) <= 0.1 * LIMIT / 2, each
    assert sum(harness.committed().values()) < len(records), "the backlog ran out: no test"
    for member in members:
        assert member.sample("ofsys_journey_throttled_seconds_total") > 5

    # nothing lost: the rest without the limit (a kill -9 leaves windows uncommitted,
    # processed again with the same ids), then the ledger against the truth
    for member in members:
        member.kill()
    rest = harness.start(OFSYS_BATCH_MAX_COMMANDS="500")
    harness.wait_committed(len(records), 120, "every record committed")
    harness.assert_ledger_matches(records)
    assert rest.terminate() == 0
