"""event_ids: ids kept as 60-bit hashes, their `s<n>` records, load and expiry."""

from __future__ import annotations

import uuid

import orjson
import pytest

from pipeline.source.changes import PageView
from pipeline.state import event_ids
from pipeline.state.event_ids import EventIds, id_hash
from pipeline.state.partition import PartitionState
from pipeline.state.records import RECORD_BUDGET, Record

HOUR = 3_600_000


def restored(records: list[Record], retention_ms: int = HOUR) -> EventIds:
    ids = EventIds(retention_ms)
    for key, value in records:
        ids.load(key[1:].decode(), value)
    return ids


def hashes(*event_ids: str) -> list[int]:
    return sorted(id_hash(i) for i in event_ids)


def test_changes_load_round_trip() -> None:
    ids = EventIds(HOUR)
    ids.add("e-1")
    ids.add("e-2")
    first = ids.changes(1000)
    assert [k for k, _ in first] == [b"s0"]
    assert ids.changes(1000) == []  # nothing new
    ids.add("e-3")
    log = first + ids.changes(2000)
    assert log[-1][0] == b"s1"
    twin = restored(log)
    assert twin.snapshot() == ids.snapshot() == hashes("e-1", "e-2", "e-3")
    assert "e-2" in twin and "e-4" not in twin
    assert twin.load("1", log[-1][1]) == 2000  # the newest event time it holds
    # numbering goes on after a restore: no window overwrites a kept one
    twin.add("e-4")
    assert twin.changes(3000)[0][0] == b"s2"


def test_records_written_as_json_by_older_versions_are_read() -> None:
    ids = restored([(b"s0", orjson.dumps([1000, ["e-1", "e-2"]]))])
    assert "e-1" in ids and "e-2" in ids and "e-3" not in ids
    assert ids.load("0", orjson.dumps([5000, ["e-9"]])) == 5000  # replaces window 0
    assert "e-1" not in ids and "e-9" in ids


def test_a_big_window_is_split_under_the_record_budget() -> None:
    ids = EventIds(HOUR)
    new = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(100_000)]
    for event_id in new:
        ids.add(event_id)
    records = ids.changes(1000)
    assert len(records) > 1
    assert all(value is not None and len(value) <= RECORD_BUDGET for _, value in records)
    assert restored(records).snapshot() == hashes(*new)


def test_hashes_are_stable_and_distinct() -> None:
    # stable across processes (no salt): the changelog is read by the next process
    import hashlib

    digest = hashlib.blake2b(b"e-1", digest_size=8).digest()
    assert id_hash("e-1") == int.from_bytes(digest, "little") & ((1 << 60) - 1)
    assert id_hash("00000000-0000-0000-0000-000000000001") == 1
    # a UUID folds all its 128 bits: v1 ids that share clock sequence and node differ
    v1 = [
        str(uuid.UUID(fields=(t, 0x1234, 0x1ABC, 0x80, 0x01, 0x0242AC110002))) for t in range(1000)
    ]
    assert len({id_hash(i) for i in v1}) == 1000
    assert len({id_hash(f"event-{i}") for i in range(100_000)}) == 100_000
    assert id_hash("not-a-uuid-but-thirty-six-characters") < 1 << 60


def test_expire_forgets_old_windows_with_tombstones() -> None:
    ids = EventIds(HOUR)
    log: list[Record] = []
    for n, ms in enumerate((0, HOUR, 2 * HOUR)):
        ids.add(f"e-{n}")
        log += ids.changes(ms)
    assert ids.expire(2 * HOUR) == [(b"s0", None)]  # older than the retention
    assert ids.expire(2 * HOUR) == []
    assert ids.snapshot() == hashes("e-1", "e-2")
    log += [(b"s0", None)]
    assert restored(log).snapshot() == ids.snapshot()


def uuids(start: int, count: int) -> list[str]:
    return [
        str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15) % (1 << 128)))
        for i in range(start, start + count)
    ]


def test_sealed_windows_join_the_sorted_array_and_still_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(event_ids, "MERGE_AT", 1000)
    ids = EventIds(HOUR)
    log: list[Record] = []
    batches = [uuids(n * 600, 600) for n in range(5)]
    for n, batch in enumerate(batches):
        for event_id in batch:
            ids.add(event_id)
        log += ids.changes(n * 1000)
    assert len(ids.seen) < 1000  # the older windows left the set for the array
    every = [i for batch in batches for i in batch]
    assert len(ids) == 3000 and ids.snapshot() == hashes(*every)
    assert all(i in ids for i in every) and not any(i in ids for i in uuids(10_000, 500))
    twin = restored(log)
    assert twin.snapshot() == ids.snapshot() and len(twin) == 3000
    assert all(i in twin for i in every[::7])


def test_expiry_and_tombstones_reach_windows_in_the_array(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_ids, "MERGE_AT", 100)
    ids = EventIds(HOUR)
    log: list[Record] = []
    old, late = uuids(0, 300), uuids(300, 300)
    for event_id in old:
        ids.add(event_id)
    log += ids.changes(0)  # merged: 300 >= 100
    for event_id in late:
        ids.add(event_id)
    log += ids.changes(2 * HOUR)
    gone = ids.expire(2 * HOUR)
    assert gone == [(b"s0", None)]
    assert not any(i in ids for i in old) and all(i in ids for i in late)
    assert ids.snapshot() == hashes(*late) and len(ids) == 300
    twin = restored(log + gone)  # a record, then its tombstone, in one restore
    assert twin.snapshot() == ids.snapshot()
    assert not any(i in twin for i in old[::5]) and all(i in twin for i in late[::5])


def test_the_hot_path_check_is_exact_after_a_restore() -> None:
    state = PartitionState()
    for event_id in uuids(0, 50):
        state.apply(PageView(event_id, 1000, None, None, None))
    log = state.changes()
    twin = PartitionState()
    for k, v in log:
        twin.load(k, v)
    assert not any(twin.apply(PageView(i, 1000, None, None, None)) for i in uuids(0, 50))
    assert all(twin.apply(PageView(i, 1000, None, None, None)) for i in uuids(50, 50))
