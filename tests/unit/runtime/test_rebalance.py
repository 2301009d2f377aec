"""Rebalances: a revoked partition's window is never committed by the new generation;
a lost assignment commits nothing; revocation settles under a deadline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.runtime.checkpoint import Window
from pipeline.testing import ScriptedJourney

from .conftest import TOPIC, Rig, fill


def test_a_window_of_a_revoked_assignment_is_never_committed_by_the_next(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig(partitions=2, journey=ScriptedJourney([503] * 3), OFSYS_SHUTDOWN_TIMEOUT_S="2")
    fill(r, records[:300], partitions=2)
    offsets = r.pipeline.checkpoint.offsets
    committed_generations: list[int] = []
    real_commit = offsets.commit

    def commit(consumer: Any, windows: list[Window], *args: Any, **kwargs: Any) -> bool:
        committed_generations.extend(w.generation for w in windows)
        return real_commit(consumer, windows, *args, **kwargs)

    offsets.commit = commit  # type: ignore[method-assign]
    r.window()  # sealed in generation 1; Journey answers 503
    old = r.fakes.worker.submitted[0]
    assert old.generation == 1
    sources = [(TOPIC, 0), (TOPIC, 1)]
    sources += [(r.pipeline.settings.repartition_topic, p) for p in (0, 1)]
    r.fakes.consumer.revoke_next()
    r.fakes.consumer.assign_next(sources)
    r.turn()  # revoked (Journey still failing: nothing committed), assigned again
    assert r.pipeline.checkpoint.offsets.generation == 2
    assert r.fakes.consumer.commits == []
    # Journey recovers: the old window is delivered, yet its offsets are not ours to
    # commit; the new generation re-reads from the committed offsets and commits its own
    r.turn(4)
    assert old not in r.pipeline.checkpoint.to_commit
    assert all(w.generation == 2 for w in r.pipeline.checkpoint.to_commit)
    ends = {p: r.fakes.consumer.end((TOPIC, p)) for p in (0, 1)}
    r.window()
    r.turn()
    assert r.committed() == ends
    assert {w.generation for w in r.fakes.worker.submitted} == {1, 2}
    assert set(committed_generations) == {2}  # generation 1's windows: delivered, never committed


def test_a_revoked_partition_is_delivered_and_committed_before_it_goes(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig(partitions=2)
    fill(r, records[:300], partitions=2)
    r.fakes.consumer.revoke_next()
    r.turn()  # revoke: seal, deliver, commit, then let go
    assert r.committed() == {p: r.fakes.consumer.end((TOPIC, p)) for p in (0, 1)}
    assert r.pipeline.states == {}


def test_revocation_settles_under_its_deadline_while_journey_fails(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig(journey=ScriptedJourney([503] * 10_000), OFSYS_SHUTDOWN_TIMEOUT_S="3")
    fill(r, records[:100])
    r.fakes.outputs.hold = True  # and the broker takes nothing either
    started = r.fakes.clock.monotonic()
    r.fakes.consumer.revoke_next()
    r.turn()
    assert r.fakes.clock.monotonic() - started <= 3.0 + 0.2  # plus one poll
    assert r.committed() == {}
    assert r.pipeline.states == {}


def test_a_lost_assignment_commits_nothing_and_forgets_its_windows(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig(journey=ScriptedJourney([503]))
    fill(r, records[:100])
    r.window()  # handed to the worker, not delivered
    r.fakes.consumer.lose_next()
    r.turn(3)
    assert r.fakes.consumer.commits == []
    assert r.pipeline.states == {}
    assert r.pipeline.checkpoint.marks == {}


def test_a_stop_during_a_restore_abandons_it_and_the_loop_still_drains_and_closes(
    rig: Callable[..., Rig], records: list[tuple[str, bytes]]
) -> None:
    r = rig(OFSYS_SHUTDOWN_TIMEOUT_S="2")
    store = r.fakes.store
    assert store is not None
    real_restore = store.restore

    def restore(partitions: list[int], stopping: Callable[[], bool]) -> Any:
        r.pipeline.stop()  # SIGTERM arrives while the changelog is read
        return real_restore(partitions, stopping)

    store.restore = restore  # type: ignore[method-assign]
    for key, value in records[:50]:
        r.fakes.consumer.add(TOPIC, key, value)
    r.fakes.consumer.assign_next([(TOPIC, 0), (r.pipeline.settings.repartition_topic, 0)])
    r.pipeline.run()  # returns: the interrupted restore ends the loop, not the process
    assert store.restores == []  # abandoned before it built anything
    assert r.pipeline.states == {}
    assert r.fakes.consumer.closed
    assert r.committed() == {}
    assert r.fakes.journey.requests == 0
