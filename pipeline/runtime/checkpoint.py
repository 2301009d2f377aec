"""The checkpoint: windows, offsets and seal marks, sealed and committed in one order.

Owns what the loop has processed (`Offsets`), the window being filled and the sealed
ones (`Window`), each partition's seal marks, and `Checkpoint.commit`, the one place the
order of deliver -> changelog -> flush -> commit is written. `Offsets`, `Window` and
`Deadline` are defined in offsets.py and re-exported here.

Invariants. A window's offsets are those at each partition's last flush, never beyond:
a record processed after its partition's flush has no command in any sealed window. A
window's seal marks, `[input offset, repartition offset]` per partition, are durable
before its commands leave. Its offsets are committed only once the worker reports all
its commands accepted or dead-lettered, its changelog records and triggers are flushed,
and only for partitions still assigned in the same assignment generation (a partition
that moved away and came back never has an older window's offsets committed over newer
ones). A partition the broker did not commit is never recorded as committed. Every
blocking step of a drain takes its budget from one `Deadline`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from confluent_kafka import TopicPartition

from .. import logs
from ..errors import PipelineError
from ..state.partition import MARKS_KEY, PartitionState
from ..state.triggers import trigger_record
from .offsets import Deadline, Offsets, Records, Source, Window

if TYPE_CHECKING:
    from collections.abc import Callable

    from .ports import Clock, Consumer, Outputs, Store, Worker

__all__ = [
    "COMMIT_FLUSH_S",
    "COMMIT_RETRY_S",
    "Checkpoint",
    "Deadline",
    "Offsets",
    "Records",
    "Source",
    "Window",
]

log = logs.get("commit")
COMMIT_FLUSH_S = 1.0  # longest one turn waits for the broker before trying again later
COMMIT_RETRY_S = 0.25  # pause between offset commit retries while draining
# Offsets already committed are committed again this often. A commit that a former
# owner's revocation abandoned at its deadline (a broker that held it through the
# rebalance) can still reach the broker later, rewinding the group's offset under the
# new owner; committing again heals it, and keeps an idle partition's offset alive.
COMMIT_REFRESH_S = 10.0


class Checkpoint:
    """Seals complete windows and commits them in the documented order (`commit`)."""

    def __init__(
        self,
        *,
        topics: tuple[str, str],
        consumer: Consumer,
        outputs: Outputs,
        worker: Worker,
        store: Store | None,
        states: dict[int, PartitionState],
        clock: Clock,
        triggers_topic: str,
        encode_trigger: Callable[[dict[str, Any]], bytes],
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.topics = topics
        self.offsets = Offsets()
        self.window = Window(0)  # the window being filled
        self.awaiting: list[Window] = []  # sealed; their seal marks not yet durable
        self.to_commit: list[Window] = []  # delivered; offsets not yet committed
        self.marks: dict[int, list[list[int]]] = {}  # per partition: closes not committed
        self._marks_changed: set[int] = set()
        self._consumer = consumer
        self._outputs = outputs
        self._worker = worker
        self._store = store
        self.states = states
        self._clock = clock
        self._triggers_topic = triggers_topic
        self._encode_trigger = encode_trigger
        self._on_commit = on_commit
        self._refresh_at = 0.0

    @property
    def waiting(self) -> int:
        """Windows sealed but not yet committed, outside the worker."""
        return len(self.awaiting) + len(self.to_commit)

    def sources(self, partition: int) -> tuple[Source, Source]:
        return (self.topics[0], partition), (self.topics[1], partition)

    # -- sealing -------------------------------------------------------------------------

    def flush_partition(
        self, partition: int, clock_ms: int, *, mark: bool, changes: bool = True
    ) -> None:
        """Close the partition's part of the window being filled: fire its due triggers,
        make its commands (per-event ones in event order, then one net change per cart
        that changed), take its state changes (unless `changes` is False: the caller
        then calls `take_changes` before the next event), and note where it closed (a
        seal mark when `mark`; a replay closes at marks already recorded)."""
        state = self.states[partition]
        window = self.window
        window.triggers.extend(state.fire_due(clock_ms))
        window.commands.extend(state.flush())
        if changes:
            self.take_changes(window, partition)
        close = self.offsets.flushed(window, self.sources(partition))
        if mark and self._store is not None:
            marks = self.marks.setdefault(partition, [])
            if not marks or marks[-1] != close:
                marks.append(close)
                self._marks_changed.add(partition)

    def take_changes(self, window: Window, partition: int) -> None:
        """The partition's state changes since its last flush, into `window` (a flushed
        window, so it is handed on and committed with them)."""
        if self._store is not None:
            window.changelog.setdefault(partition, []).extend(self.states[partition].changes())

    def seal(self) -> Window:
        """Take the window being filled (its partitions flushed by the caller), write the
        new seal marks, and hand it on: to the worker once the marks are durable."""
        window, self.window = self.window, Window(self.offsets.generation)
        window.events, self.offsets.events = self.offsets.events, 0
        self._write_marks()
        if window:
            self.awaiting.append(window)
            self.submit(COMMIT_FLUSH_S)
        return window

    def _write_marks(self) -> None:
        for partition in self._marks_changed:
            marks = self.marks.get(partition)
            if partition in self.states and self._store is not None:
                self._store.write(partition, [(MARKS_KEY, orjson.dumps(marks) if marks else None)])
        self._marks_changed.clear()

    def submit(self, wait_s: float) -> None:
        """Hand sealed windows to the worker once the broker has their seal marks (with
        the changelog off there are none to wait for)."""
        if not self.awaiting:
            return
        if self._store is not None and self._outputs.flush(wait_s):
            return  # the broker has not taken them yet: try again on the next turn
        for window in self.awaiting:
            self._worker.submit(window)
        self.awaiting.clear()

    # -- committing ----------------------------------------------------------------------

    def commit(self, flush_s: float = COMMIT_FLUSH_S, commit_s: float | None = None) -> bool:
        """Commit the windows the worker finished. In this order, so a commit never covers
        a command Journey has not accepted or a dead letter the broker has not taken:

        0. (at seal) the window's seal marks are durable before its commands leave;
        1. the worker delivered every command of the window (accepted or dead-lettered);
        2. produce the window's state changes to the changelog, for the partitions
           still assigned in this assignment generation, and its triggers;
        3. flush the producer (dead letters, changelog, triggers); while the broker has
           not taken everything within `flush_s`, wait (on later turns) and commit
           nothing;
        4. commit, synchronously (within `commit_s` when given), the newest offsets the
           windows cover (every COMMIT_REFRESH_S, those already committed too); a
           partition the broker did not commit stays pending and is tried again;
        5. drop the seal marks the commit passed.

        A crash before step 3 completes restores the state from before the window and
        re-processes its records, closing windows at the same marks: the same commands
        with the same ids, which Journey keeps once. A crash between 3 and 4 restores
        the state from after it: its records are then replays and make nothing.
        True when nothing delivered is left uncommitted.
        """
        if self._worker.failure is not None:
            raise PipelineError("delivery failed") from self._worker.failure
        for window in self.offsets.current(self._worker.completed()):
            self._write_window(window)
            self.to_commit.append(window)
        if not self.to_commit:
            return True
        self.to_commit = self.offsets.current(self.to_commit)
        if not self.to_commit:
            return True
        if self._outputs.flush(flush_s):
            return False
        now = self._clock.monotonic()
        refresh = now >= self._refresh_at
        if not self.offsets.commit(self._consumer, self.to_commit, commit_s, refresh=refresh):
            return False
        if refresh:
            self._refresh_at = now + COMMIT_REFRESH_S
        self._on_commit()
        self.to_commit.clear()
        self._prune_marks()
        return True

    def _write_window(self, window: Window) -> None:
        if self._store is not None:
            for partition, records in window.changelog.items():
                if partition in self.states:
                    self._store.write(partition, records)
        now_ms = int(self._clock.time() * 1000)
        for command in window.triggers:
            record = trigger_record(command, now_ms)
            self._outputs.produce(
                self._triggers_topic,
                command["cartId"] or record["email"],
                self._encode_trigger(record),
            )

    def _prune_marks(self) -> None:
        committed = self.offsets.committed
        for partition, marks in self.marks.items():
            done = [committed.get(s, 0) for s in self.sources(partition)]
            ahead = [m for m in marks if m[0] > done[0] or m[1] > done[1]]
            if len(ahead) != len(marks):
                self.marks[partition] = ahead
                self._marks_changed.add(partition)

    def settle(self, deadline: Deadline) -> bool:
        """Under `deadline`: hand on the sealed windows, wait for the worker, and commit
        what it delivered. True when nothing is left undelivered or uncommitted."""
        while self.awaiting and not deadline.passed():
            self.submit(deadline.budget(COMMIT_FLUSH_S))
        self._worker.wait_idle(deadline.remaining())
        while (
            not self.commit(deadline.budget(COMMIT_FLUSH_S), deadline.remaining())
            and not deadline.passed()
        ):
            self._clock.sleep(deadline.budget(COMMIT_RETRY_S))
        return not (self.awaiting or self.to_commit or self._worker.outstanding)

    def report_uncommitted(self) -> None:
        """On the way out: say what stays uncommitted, never as committed."""
        if self.offsets.failed:
            log.warning(
                "exiting with offsets the broker did not commit; their records are "
                "processed again by the next owner",
                extra={"partitions": sorted(f"{t}[{p}]" for t, p in self.offsets.failed)},
            )
        if self._worker.outstanding or self.to_commit or self.awaiting:
            log.warning(
                "exiting with undelivered windows; their records stay uncommitted",
                extra={"windows": self._worker.outstanding + self.waiting},
            )
            return
        if not self.offsets.failed:
            log.info("drained and committed; exiting")

    # -- assignments ---------------------------------------------------------------------

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """A new assignment generation: windows of the last one are not ours any more."""
        self.offsets.generation += 1
        self.window = Window(self.offsets.generation)
        for tp in self._consumer.committed(partitions, timeout=30):
            self.offsets.start((tp.topic, tp.partition), tp.offset)

    def release(self, partitions: list[TopicPartition]) -> None:
        """Forget the partitions, and every window whose seal marks never reached the
        broker: none of it went to Journey, and the next owner closes its windows anew
        from the committed offsets (delivering it now would send Journey a split of the
        records that no mark records). Assignments change whole (eager rebalancing)."""
        if self.window or self.awaiting:
            log.info(
                "windows not yet handed to Journey dropped with the assignment",
                extra={"windows": len(self.awaiting) + bool(self.window)},
            )
        self.window = Window(self.offsets.generation)
        self.awaiting.clear()
        for tp in partitions:
            self.marks.pop(tp.partition, None)
            self._marks_changed.discard(tp.partition)
            self.offsets.forget((tp.topic, tp.partition))
