"""`FakeStore`: the changelog (the `Store` port), written through `FakeOutputs` (so
durable only once flushed) and restored from what was flushed."""

from __future__ import annotations

from collections.abc import Callable

from ..config import Settings
from ..errors import RestoreInterruptedError
from ..runtime.changelog import retention, trigger_settings
from ..state.partition import PartitionState
from .kafka import FakeOutputs


class FakeStore:
    """The changelog, through `FakeOutputs`: restore reads only what was flushed."""

    def __init__(self, outputs: FakeOutputs, settings: Settings) -> None:
        self.topic = settings.changelog_topic
        self._outputs = outputs
        self._settings = settings
        self.restores: list[list[int]] = []

    def write(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        self._outputs.produce_many(self.topic, records, partition)

    def restore(
        self, partitions: list[int], stopping: Callable[[], bool]
    ) -> tuple[dict[int, PartitionState], int]:
        if stopping():
            raise RestoreInterruptedError(f"restoring {self.topic}: stopping")
        self.restores.append(list(partitions))
        settings = self._settings
        states = {
            p: PartitionState(retention(settings), trigger_settings(settings)) for p in partitions
        }
        count = 0
        for record in self._outputs.topic(self.topic):
            if record.partition in states:
                key = record.key.encode() if isinstance(record.key, str) else record.key
                states[record.partition].load(key or b"", record.value)
                count += 1
        for state in states.values():
            state.restored()
        return states, count
