"""The delivery worker: sealed windows to Journey, in order, several requests at a time.

A window's commands are split by cart (cartless ones by email) into
OFSYS_JOURNEY_MAX_IN_FLIGHT lanes. Each lane is a thread that delivers its share of
each window, one window after another, through its own `Delivery` (the response
table). Invariants: a cart always takes the same lane and a lane keeps the order of
its commands and windows, so one cart's commands reach Journey in the order of its
events; a window is done when every lane is done with it, and windows are reported
done in the order submitted (so offsets are committed in order). While any lane waits
to resend (`retrying`) the loop pauses consumption: that is the backpressure.
`stop(deadline)` finishes what is queued but gives up retrying past the deadline: the
windows left stay uncommitted.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Callable

from .. import logs
from ..errors import ShutdownTimeoutError
from ..metrics import Metrics
from ..runtime.checkpoint import Window
from .batch import batches, lanes_of
from .client import Transport
from .commands import Command
from .delivery import Delivery
from .ratelimit import RateLimit

log = logs.get("deliver")

Share = tuple[int, list[Command]]  # (window sequence number, the lane's commands of it)


class _Pending:
    """A window submitted, and how many lanes have yet to deliver their share of it."""

    __slots__ = ("lanes", "window")

    def __init__(self, window: Window, lanes: int) -> None:
        self.window = window
        self.lanes = lanes


class DeliveryWorker:
    """Delivers sealed windows on `lanes` threads, done in the order submitted.

    The loop reads: `completed()`, the windows fully delivered since it last asked, in
    order; `outstanding`, windows submitted and not yet completed; `retrying`, True
    while a lane waits to send again; `unauthorized`, Journey refuses the key;
    `failure`, the unexpected exception that stopped a lane (the loop stops the process).
    """

    def __init__(
        self,
        client: Transport,
        metrics: Metrics,
        dead_letter: Callable[[Command, str], None],
        *,
        max_commands: int,
        max_bytes: int,
        max_backoff_s: float,
        lanes: int = 1,
        limit: RateLimit | None = None,
    ) -> None:
        self._max_commands = max_commands
        self._max_bytes = max_bytes
        self._lanes = max(lanes, 1)
        self._deliveries = [
            Delivery(
                client,
                metrics,
                max_backoff_s=max_backoff_s,
                wait=functools.partial(self._sleep, lane),
                dead_letter=dead_letter,
                limit=limit,  # one bucket for every lane: the member's share
            )
            for lane in range(self._lanes)
        ]
        self._queues: list[queue.Queue[Share | None]] = [queue.Queue() for _ in self._deliveries]
        self._retrying = [False] * self._lanes
        self._windows: dict[int, _Pending] = {}  # by sequence number
        self._submitted = 0
        self._next_done = 0
        self._done: queue.Queue[Window] = queue.Queue()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = float("inf")
        self.failure: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._lane, args=(lane,), name=f"ofsys-deliver-{lane}")
            for lane in range(self._lanes)
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    @property
    def unauthorized(self) -> bool:
        return any(delivery.unauthorized for delivery in self._deliveries)

    @property
    def retrying(self) -> bool:
        return any(self._retrying)

    @property
    def outstanding(self) -> int:
        return len(self._windows)  # submitted, not yet reported done

    def submit(self, window: Window) -> None:
        shares = lanes_of(window.commands, self._lanes)
        with self._lock:
            seq = self._submitted
            self._submitted += 1
            self._windows[seq] = _Pending(window, self._lanes)
        for lane, share in enumerate(shares):
            self._queues[lane].put((seq, share))

    def completed(self) -> list[Window]:
        done = []
        while True:
            try:
                done.append(self._done.get_nowait())
            except queue.Empty:
                return done

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until every submitted window is done (or failed); False on timeout."""
        end = time.monotonic() + timeout_s
        while self._windows and self.failure is None and time.monotonic() < end:
            time.sleep(0.005)
        return not self._windows

    def stop(self, deadline: float) -> None:
        """Finish what is queued, but give up retrying once `deadline` (monotonic) passes."""
        self._deadline = deadline
        self._stop.set()
        for lane in self._queues:
            lane.put(None)

    def join(self, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(end - time.monotonic(), 0.0))

    def _sleep(self, lane: int, seconds: float) -> None:
        """A lane's retry wait: interruptible, and over (ShutdownTimeoutError) at the
        `stop` deadline."""
        self._retrying[lane] = True
        end = time.monotonic() + seconds
        while (remaining := end - time.monotonic()) > 0:
            if time.monotonic() >= self._deadline:
                raise ShutdownTimeoutError("shutdown deadline passed while Journey retried")
            # once stopping, the event is set and would not wait: sleep the slice instead
            if self._stop.is_set():
                time.sleep(min(remaining, 0.1))
            else:
                self._stop.wait(min(remaining, 0.1))

    def _lane(self, lane: int) -> None:
        shares, deliver = self._queues[lane], self._deliveries[lane].deliver
        while (share := shares.get()) is not None:
            seq, commands = share
            try:
                for batch in batches(commands, self._max_commands, self._max_bytes):
                    deliver(batch)
            except ShutdownTimeoutError:
                log.warning(
                    "shutdown deadline passed; the last windows stay uncommitted "
                    "and will be processed again",
                    extra={"lane": lane},
                )
                return
            except BaseException as exc:  # surfaced to the loop, which stops the process
                self.failure = exc
                return
            self._retrying[lane] = False
            self._lane_done(seq)

    def _lane_done(self, seq: int) -> None:
        """One lane finished window `seq`; report, in order, the windows now complete."""
        with self._lock:
            self._windows[seq].lanes -= 1
            while (head := self._windows.get(self._next_done)) is not None and not head.lanes:
                del self._windows[self._next_done]
                self._next_done += 1
                self._done.put(head.window)
