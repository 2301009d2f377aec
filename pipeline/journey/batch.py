"""Commands -> Journey request bodies, bounded by command count and body bytes.

Commands are encoded a batch at a time; a body is the encoded commands joined.
Invariants: the batches hold the commands in their order, each within both bounds (but
for a lone oversized command); the batch id is a hash of exactly the encoded commands, so a
retried, split or re-made batch with the same content carries the same
Idempotency-Key, and different content never shares one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import orjson

from .commands import Command

_HEAD = b'{"batchId":"'
_MID = b'","commands":['
_TAIL = b"]}"
_OVERHEAD = len(_HEAD) + 32 + len(_MID) + len(_TAIL)


class Batch:
    """One Journey request: its commands, their encodings and the body."""

    __slots__ = ("_encoded", "batch_id", "body", "commands")

    def __init__(
        self, commands: list[Command], encoded: list[bytes] | None, joined: bytes | None = None
    ) -> None:
        """From the commands' encodings, or from them already joined (`joined`: orjson's
        array of the commands less its brackets, the same bytes); `encoded` None and no
        `joined`: the commands are encoded here."""
        self.commands = commands
        self._encoded = encoded
        if joined is None:
            joined = b",".join(self.encoded)
        self.batch_id = hashlib.blake2b(joined, digest_size=16).hexdigest()
        self.body = b"".join((_HEAD, self.batch_id.encode(), _MID, joined, _TAIL))

    @property
    def encoded(self) -> list[bytes]:
        """Each command's encoding: made only when a batch is split or trimmed (rare)."""
        if self._encoded is None:
            self._encoded = [orjson.dumps(command) for command in self.commands]
        return self._encoded

    def __len__(self) -> int:
        return len(self.commands)

    def tally(self, now_ms: float) -> tuple[dict[str, int], list[float]]:
        """For the metrics of an accepted batch: its commands by call, and each one's
        age in seconds at `now_ms` (here, compiled, not in the delivery lane's loop:
        the lanes share the GIL with the loop thread)."""
        calls: dict[str, int] = {}
        ages: list[float] = []
        for command in self.commands:
            call = command["call"]
            calls[call] = calls.get(call, 0) + 1
            ages.append((now_ms - command["ts"]) / 1000.0)
        return calls, ages

    def without(self, ids: set[str]) -> Batch | None:
        """The same batch less the commands named; None when nothing is left."""
        keep = [i for i, command in enumerate(self.commands) if command["id"] not in ids]
        if not keep:
            return None
        encoded = self.encoded
        return Batch([self.commands[i] for i in keep], [encoded[i] for i in keep])

    def halves(self) -> tuple[Batch, Batch]:
        mid = len(self.commands) // 2
        encoded = self.encoded
        return (
            Batch(self.commands[:mid], encoded[:mid]),
            Batch(self.commands[mid:], encoded[mid:]),
        )


def lanes_of(commands: list[Command], lanes: int) -> list[list[Command]]:
    """A window's commands split over the delivery lanes by cart (a cartless visitor's
    by email): a cart's commands stay in one lane, in their order."""
    if lanes == 1:
        return [commands]
    shares: list[list[Command]] = [[] for _ in range(lanes)]
    key: str | None = None
    share = shares[hash(key) % lanes]
    for command in commands:
        # a net change's commands come together, under one cart id (the same str)
        name = command["cartId"] or command["email"]
        if name is not key:
            key = name
            share = shares[hash(name) % lanes]
        share.append(command)
    return shares


def batches(commands: list[Command], max_commands: int, max_bytes: int) -> Iterator[Batch]:
    """Split commands, in order, into batches within both bounds (a lone oversized
    command still gets a batch of its own: Journey, not the splitter, judges it).

    Greedy: each batch takes as many commands as both bounds allow. The usual case, the
    next `max_commands` commands within `max_bytes`, is one orjson call for all of them
    (its array's bytes are the encodings joined by commas); only a batch the byte bound
    ends early encodes its commands one by one. Either way the same batches."""
    start, end = 0, len(commands)
    while start < end:
        chunk = commands[start : start + max_commands]
        data = orjson.dumps(chunk)
        if len(data) - 2 + _OVERHEAD <= max_bytes:
            yield Batch(chunk, None, data[1:-1])
        else:
            chunk, encoded = _by_bytes(commands, start, max_commands, max_bytes)
            yield Batch(chunk, encoded)
        start += len(chunk)


def _by_bytes(
    commands: list[Command], start: int, max_commands: int, max_bytes: int
) -> tuple[list[Command], list[bytes]]:
    """The batch from `start` as far as the byte bound allows (at least one command)."""
    chunk: list[Command] = []
    encoded: list[bytes] = []
    size = _OVERHEAD
    for command in commands[start : start + max_commands]:
        data = orjson.dumps(command)
        if chunk and size + len(data) + 1 > max_bytes:
            break
        chunk.append(command)
        encoded.append(data)
        size += len(data) + 1
    return chunk, encoded
