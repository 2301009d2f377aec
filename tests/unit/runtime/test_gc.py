"""The loop's process policy: rare young-generation passes, pages given back at each
seal, a short GIL switch interval."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable

import pytest

from pipeline.runtime import loop
from pipeline.runtime.loop import GEN0_THRESHOLD, SWITCH_INTERVAL_S

from .conftest import Rig, fill


def test_a_started_pipeline_runs_a_young_gc_pass_per_100k_allocations_not_700(
    rig: Callable[..., Rig],
) -> None:
    gc.set_threshold(700, 10, 10)
    rig()
    assert gc.get_threshold() == (GEN0_THRESHOLD, 10, 10)
    assert GEN0_THRESHOLD == 100_000


def test_every_seal_freezes_the_survivors_and_gives_free_pages_back(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    releases: list[int] = []
    monkeypatch.setattr(loop, "release", lambda: releases.append(1))
    r = rig()
    fill(r, records[:50])
    gc.unfreeze()
    for expected in (1, 2, 3):
        r.window()
        assert len(releases) == expected
        assert gc.get_freeze_count() > 0


def test_a_started_pipeline_lets_the_delivery_lanes_have_the_gil_within_a_millisecond(
    rig: Callable[..., Rig],
) -> None:
    sys.setswitchinterval(0.005)
    rig()
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
    assert SWITCH_INTERVAL_S == 0.001
