"""When windows close: on a fixed cadence, within a few records of being due, and with
their changelog records taken once their commands are on their way."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.runtime.loop import SEAL_CHECK_RECORDS

from .conftest import TOPIC, WINDOW_S, Rig, fill


def slow_seals(r: Rig, seconds: float) -> list[float]:
    """Every seal takes `seconds` of the fake clock; returns when each one started."""
    started: list[float] = []
    real = r.pipeline.seal

    def seal() -> None:
        started.append(r.fakes.clock.monotonic())
        real()
        r.fakes.clock.advance(seconds)

    r.pipeline.seal = seal  # type: ignore[method-assign]
    return started


def test_the_time_a_seal_takes_does_not_lengthen_the_next_window(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig()
    fill(r, records[:50])
    start = r.fakes.clock.monotonic()
    started = slow_seals(r, 0.3)
    r.window()  # due at start + 1 s; the seal ends at start + 1.3 s
    r.fakes.clock.advance(WINDOW_S - 0.3)  # start + 2 s: the next window is due
    r.turn()
    assert started == [start + WINDOW_S, start + 2 * WINDOW_S]


def test_a_seal_longer_than_a_window_starts_the_cadence_anew(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig()
    fill(r, records[:50])
    start = r.fakes.clock.monotonic()
    started = slow_seals(r, 1.5)
    r.window()  # the seal ends at start + 2.5 s, past the next due time
    r.turn()  # not sealed again at once: the next window is due a whole interval later
    assert started == [start + WINDOW_S]
    r.fakes.clock.advance(WINDOW_S)
    r.turn()
    assert started == [start + WINDOW_S, start + 3.5 * WINDOW_S]


def test_a_window_due_mid_poll_is_sealed_within_a_few_records(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig()
    fill(r, records[:10])
    polled = records[10:]
    assert len(polled) > 2 * SEAL_CHECK_RECORDS
    for key, value in polled:
        r.fakes.consumer.add(TOPIC, key, value)
    r.window()  # the window is due as the turn polls them all at once
    [window] = r.fakes.worker.submitted
    assert window.offsets[(TOPIC, 0)] == 10 + SEAL_CHECK_RECORDS
    r.window()  # the rest of the poll went into the next window
    assert r.fakes.worker.submitted[-1].offsets[(TOPIC, 0)] == len(records)


def test_a_window_carries_its_changelog_records_and_the_next_one_its_own(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig()
    fill(r, records[:100])
    r.window()
    for key, value in records[100:200]:
        r.fakes.consumer.add(TOPIC, key, value)
    r.window()
    first, second = r.fakes.worker.submitted
    ids_first = [k for k, _ in first.changelog[0] if k.startswith(b"s")]
    ids_second = [k for k, _ in second.changelog[0] if k.startswith(b"s")]
    assert ids_first and ids_second  # each window's event ids, in its own records
    assert not set(ids_first) & set(ids_second)
