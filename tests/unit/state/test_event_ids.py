"""event_ids: the `s<n>` records of the event ids seen, their load and expiry."""

from __future__ import annotations

import orjson

from pipeline.state.event_ids import EventIds
from pipeline.state.records import RECORD_BUDGET, Record

HOUR = 3_600_000


def restored(records: list[Record], retention_ms: int = HOUR) -> EventIds:
    ids = EventIds(retention_ms)
    for key, value in records:
        ids.load(key[1:].decode(), value)
    return ids


def test_changes_load_round_trip() -> None:
    ids = EventIds(HOUR)
    ids.seen.update(["e-1", "e-2"])
    ids.new.extend(["e-1", "e-2"])
    first = ids.changes(1000)
    assert first == [(b"s0", orjson.dumps([1000, ["e-1", "e-2"]]))]
    assert ids.changes(1000) == []  # nothing new
    ids.seen.add("e-3")
    ids.new.append("e-3")
    log = first + ids.changes(2000)
    assert log[-1] == (b"s1", b'[2000,["e-3"]]')
    twin = restored(log)
    assert twin.snapshot() == ids.snapshot() == ["e-1", "e-2", "e-3"]
    assert twin.load("1", log[-1][1]) == 2000  # the newest event time it holds
    # numbering goes on after a restore: no window overwrites a kept one
    twin.seen.add("e-4")
    twin.new.append("e-4")
    assert twin.changes(3000)[0][0] == b"s2"


def test_a_big_window_is_split_under_the_record_budget() -> None:
    ids = EventIds(HOUR)
    new = [f"event-{i:08d}-" + "x" * 40 for i in range(10_000)]
    ids.seen.update(new)
    ids.new.extend(new)
    records = ids.changes(1000)
    assert len(records) > 1
    assert all(value is not None and len(value) <= RECORD_BUDGET for _, value in records)
    assert restored(records).snapshot() == sorted(new)


def test_expire_forgets_old_windows_with_tombstones() -> None:
    ids = EventIds(HOUR)
    log: list[Record] = []
    for n, ms in enumerate((0, HOUR, 2 * HOUR)):
        ids.seen.add(f"e-{n}")
        ids.new.append(f"e-{n}")
        log += ids.changes(ms)
    assert ids.expire(2 * HOUR) == [(b"s0", None)]  # older than the retention
    assert ids.expire(2 * HOUR) == []
    assert ids.snapshot() == ["e-1", "e-2"]
    log += [(b"s0", None)]
    assert restored(log).snapshot() == ids.snapshot()
