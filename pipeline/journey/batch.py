"""Commands -> Journey request bodies, bounded by command count and body bytes.

Each command is encoded once; a body is the encoded commands joined. Invariants: the
batches hold the commands in their order, each within both bounds (but for a lone
oversized command); the batch id is a hash of exactly the encoded commands, so a
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

    __slots__ = ("batch_id", "body", "commands", "encoded")

    def __init__(self, commands: list[Command], encoded: list[bytes]) -> None:
        self.commands = commands
        self.encoded = encoded
        joined = b",".join(encoded)
        self.batch_id = hashlib.blake2b(joined, digest_size=16).hexdigest()
        self.body = b"".join((_HEAD, self.batch_id.encode(), _MID, joined, _TAIL))

    def __len__(self) -> int:
        return len(self.commands)

    def without(self, ids: set[str]) -> Batch | None:
        """The same batch less the commands named; None when nothing is left."""
        keep = [i for i, command in enumerate(self.commands) if command["id"] not in ids]
        if not keep:
            return None
        return Batch([self.commands[i] for i in keep], [self.encoded[i] for i in keep])

    def halves(self) -> tuple[Batch, Batch]:
        mid = len(self.commands) // 2
        return (
            Batch(self.commands[:mid], self.encoded[:mid]),
            Batch(self.commands[mid:], self.encoded[mid:]),
        )


def batches(commands: list[Command], max_commands: int, max_bytes: int) -> Iterator[Batch]:
    """Split commands, in order, into batches within both bounds (a lone oversized
    command still gets a batch of its own: Journey, not the splitter, judges it)."""
    chunk: list[Command] = []
    encoded: list[bytes] = []
    size = _OVERHEAD
    for command in commands:
        data = orjson.dumps(command)
        if chunk and (len(chunk) >= max_commands or size + len(data) + 1 > max_bytes):
            yield Batch(chunk, encoded)
            chunk, encoded, size = [], [], _OVERHEAD
        chunk.append(command)
        encoded.append(data)
        size += len(data) + 1
    if chunk:
        yield Batch(chunk, encoded)
