"""The rebalance log lines an operator reads: one line per topic (the input's and the
repartition topic's partition numbers never mixed), and no "idle" line when closing
revokes everything after the drain."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from .conftest import TOPIC, Rig, fill


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str | None, object]]:
    return [
        (r.getMessage(), getattr(r, "topic", None), getattr(r, "partitions", None))
        for r in caplog.records
        if r.name.startswith("ofsys.")
    ]


def test_assignments_are_logged_per_topic(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    r = rig(partitions=4)
    with caplog.at_level(logging.INFO, logger="ofsys"):
        fill(r, records[:50], partitions=4)
    repartition = r.pipeline.settings.repartition_topic
    assigned = [line for line in _lines(caplog) if line[0] == "partitions assigned"]
    assert assigned == [
        ("partitions assigned", TOPIC, [0, 1, 2, 3]),
        ("partitions assigned", repartition, [0, 1, 2, 3]),
    ]


def test_shutdown_says_drained_and_never_idle_afterwards(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    r = rig(partitions=2)
    fill(r, records[:100], partitions=2)
    with caplog.at_level(logging.INFO, logger="ofsys"):
        r.pipeline.stop()
        r.pipeline.drain()
        r.pipeline.close()  # closing the consumer revokes every partition
    messages = [line[0] for line in _lines(caplog)]
    assert "drained and committed; exiting" in messages
    after = messages[messages.index("drained and committed; exiting") + 1 :]
    assert "partitions revoked" in after  # the revoke at close did happen
    assert not [m for m in messages if m.startswith("no partitions assigned")]


def test_an_idle_member_still_says_so(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    r = rig(partitions=2)
    fill(r, records[:100], partitions=2)
    with caplog.at_level(logging.INFO, logger="ofsys"):
        r.fakes.consumer.revoke_next()  # a rebalance takes everything from this member
        r.turn()
    assert "no partitions assigned: idle, ready to take over on the next rebalance" in [
        line[0] for line in _lines(caplog)
    ]
