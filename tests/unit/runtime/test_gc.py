"""The loop's process policy: rare young-generation passes, pages given back every few
seals and when the windows go quiet, a short GIL switch interval."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable

import pytest

from pipeline.runtime import loop
from pipeline.runtime.loop import GEN0_THRESHOLD, SWITCH_INTERVAL_S

from .conftest import TOPIC, Rig, fill


def test_a_started_pipeline_runs_a_young_gc_pass_per_100k_allocations_not_700(
    rig: Callable[..., Rig],
) -> None:
    gc.set_threshold(700, 10, 10)
    rig()
    assert gc.get_threshold() == (GEN0_THRESHOLD, 10, 10)
    assert GEN0_THRESHOLD == 100_000


def test_every_seal_freezes_the_survivors_and_pages_go_back_every_few_seals_and_when_quiet(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    releases: list[int] = []
    monkeypatch.setattr(loop, "release", lambda: releases.append(r.pipeline._seals))
    monkeypatch.setattr(loop, "QUIET_WINDOW_EVENTS", 10)
    r = rig()
    fill(r, records[:20])
    gc.unfreeze()
    r.window()  # seal 1: 20 events, busy
    assert gc.get_freeze_count() > 0
    for n in range(2, 5):
        r.fakes.consumer.add(TOPIC, *records[n * 20 - 20])  # seals 2-4: two events each, quiet
        r.fakes.consumer.add(TOPIC, *records[n * 20 - 19])
        r.window()
    for _ in range(5, 9):
        r.window()  # seals 5-8: quiet, as seal 4 was
    # every TRIM_EVERY_SEALS seals, and at the first quiet one
    assert loop.TRIM_EVERY_SEALS == 4
    assert releases == [2, 4, 8]


def test_a_started_pipeline_lets_the_delivery_lanes_have_the_gil_within_a_millisecond(
    rig: Callable[..., Rig],
) -> None:
    sys.setswitchinterval(0.005)
    rig()
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
    assert SWITCH_INTERVAL_S == 0.001
