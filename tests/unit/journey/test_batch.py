"""batch: commands -> Journey request bodies within both bounds, with a content batch id."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.journey.batch import Batch, batches


def command(n: int, name: str = "Чайник", pad: int = 0) -> dict[str, Any]:
    return {
        "id": f"e-{n}/0",
        "ts": 1764000000000 + n,
        "cartId": f"c-{n % 3}",
        "email": None,
        "call": "ECommerce.AddCartItem",
        "args": {
            "idCart": f"c-{n % 3}",
            "idProduct": "sku-" + "7" * pad,
            "quantity": n + 1,
            "productName": name,
        },
    }


def encoded_len(cmd: dict[str, Any]) -> int:
    return len(orjson.dumps(cmd))


def make(commands: list[dict[str, Any]]) -> Batch:
    return Batch(commands, [orjson.dumps(c) for c in commands])


def test_no_commands_no_batches() -> None:
    assert list(batches([], 10, 10_000)) == []


def test_max_commands() -> None:
    cmds = [command(i) for i in range(7)]
    out = list(batches(cmds, max_commands=3, max_bytes=1_000_000))
    assert [len(b) for b in out] == [3, 3, 1]
    assert [c for b in out for c in b.commands] == cmds
    assert [b.commands for b in out] == [cmds[0:3], cmds[3:6], cmds[6:7]]


def test_max_commands_one() -> None:
    cmds = [command(i) for i in range(3)]
    assert [b.commands for b in batches(cmds, 1, 1_000_000)] == [[c] for c in cmds]


def test_max_bytes() -> None:
    cmds = [command(i) for i in range(9)]
    size = encoded_len(cmds[0])
    assert {encoded_len(c) for c in cmds} == {size}
    envelope = len(make([]).body)  # {"batchId":"<32 hex>","commands":[]}
    assert envelope == 60
    # a body of three commands is envelope + 3 * size + 2 commas; the splitter keeps a
    # byte of slack, so three go together once one more byte is allowed
    out = list(batches(cmds, max_commands=100, max_bytes=envelope + 3 * size + 3))
    assert [b.commands for b in out] == [cmds[0:3], cmds[3:6], cmds[6:9]]
    assert {len(b.body) for b in out} == {envelope + 3 * size + 2}
    out = list(batches(cmds, max_commands=100, max_bytes=envelope + 3 * size + 1))
    assert [len(b) for b in out] == [2, 2, 2, 2, 1]
    assert all(len(b.body) <= envelope + 3 * size + 1 for b in out)
    single = list(batches(cmds, max_commands=100, max_bytes=envelope + size))
    assert [b.commands for b in single] == [[c] for c in cmds]
    assert {len(b.body) for b in single} == {envelope + size}


def test_both_bounds_together() -> None:
    cmds = [command(i) for i in range(9)]
    size = encoded_len(cmds[0])
    out = list(batches(cmds, max_commands=2, max_bytes=60 + 3 * size + 3))
    assert [len(b) for b in out] == [2, 2, 2, 2, 1]
    out = list(batches(cmds, max_commands=5, max_bytes=60 + 3 * size + 3))
    assert [len(b) for b in out] == [3, 3, 3]


def test_a_command_larger_than_max_bytes_gets_a_batch_of_its_own() -> None:
    cmds = [command(0), command(1, pad=500), command(2)]
    out = list(batches(cmds, max_commands=100, max_bytes=300))
    assert [b.commands for b in out] == [[cmds[0]], [cmds[1]], [cmds[2]]]
    assert len(out[1].body) > 300


def test_body_is_json_with_the_batch_id() -> None:
    cmds = [command(i) for i in range(4)]
    (batch,) = batches(cmds, 10, 1_000_000)
    doc = orjson.loads(batch.body)
    assert doc == {"batchId": batch.batch_id, "commands": cmds}
    assert list(doc) == ["batchId", "commands"]
    assert len(batch.batch_id) == 32
    int(batch.batch_id, 16)
    assert (
        batch.batch_id
        == hashlib.blake2b(b",".join(orjson.dumps(c) for c in cmds), digest_size=16).hexdigest()
    )


def test_batch_id_is_deterministic_for_the_content() -> None:
    cmds = [command(i) for i in range(5)]
    first = [b.batch_id for b in batches(cmds, 2, 1_000_000)]
    again = [b.batch_id for b in batches([dict(c) for c in cmds], 2, 1_000_000)]
    assert first == again
    assert len(set(first)) == 3
    # the same commands batched differently, or one argument changed: a different id
    assert make(cmds[:2]).batch_id == first[0]
    assert make(cmds[:3]).batch_id != first[0]
    changed = [dict(cmds[0], ts=cmds[0]["ts"] + 1), cmds[1]]
    assert make(changed).batch_id != first[0]
    assert make(cmds[1::-1]).batch_id != first[0]  # order is content


def test_without() -> None:
    cmds = [command(i) for i in range(5)]
    batch = make(cmds)
    rest = batch.without({"e-1/0", "e-3/0", "not-there"})
    assert rest is not None
    assert rest.commands == [cmds[0], cmds[2], cmds[4]]
    assert rest.encoded == [orjson.dumps(c) for c in rest.commands]
    assert rest.batch_id == make([cmds[0], cmds[2], cmds[4]]).batch_id
    assert rest.batch_id != batch.batch_id
    assert orjson.loads(rest.body) == {"batchId": rest.batch_id, "commands": rest.commands}
    assert batch.without(set()) is not None
    assert batch.without(set()).batch_id == batch.batch_id  # type: ignore[union-attr]
    assert batch.without({c["id"] for c in cmds}) is None
    assert len(batch) == 5  # the original is unchanged


@pytest.mark.parametrize(("n", "first"), [(2, 1), (5, 2), (6, 3)])
def test_halves(n: int, first: int) -> None:
    cmds = [command(i) for i in range(n)]
    batch = make(cmds)
    left, right = batch.halves()
    assert left.commands == cmds[:first]
    assert right.commands == cmds[first:]
    for half in (left, right):
        assert orjson.loads(half.body) == {"batchId": half.batch_id, "commands": half.commands}
        assert half.batch_id == make(half.commands).batch_id
    assert left.batch_id != right.batch_id


sizes = st.lists(st.integers(0, 120), max_size=30)


@settings(max_examples=200, deadline=None, database=None)
@given(pads=sizes, max_commands=st.integers(1, 8), room=st.integers(0, 800))
def test_batches_property(pads: list[int], max_commands: int, room: int) -> None:
    cmds = [command(i, pad=p) for i, p in enumerate(pads)]
    envelope = len(make([]).body)
    max_bytes = envelope + room
    out = list(batches(cmds, max_commands, max_bytes))
    assert [c for b in out for c in b.commands] == cmds  # all, in order
    for batch in out:
        assert 1 <= len(batch) <= max_commands
        assert batch.encoded == [orjson.dumps(c) for c in batch.commands]
        assert batch.body == make(batch.commands).body  # a batch's one orjson call: same bytes
        assert orjson.loads(batch.body) == {"batchId": batch.batch_id, "commands": batch.commands}
        if len(batch) > 1:
            assert len(batch.body) <= max_bytes
        if envelope + encoded_len(batch.commands[0]) > max_bytes:  # too big on its own
            assert len(batch) == 1
    for batch, following in itertools.pairwise(out):
        # a batch is cut only when the next command would not fit (the splitter keeps
        # one byte of slack) or the count is reached
        grown = len(batch.body) + 1 + encoded_len(following.commands[0])
        assert len(batch) == max_commands or grown + 1 > max_bytes
