"""The scripted Journey: `ScriptedJourney` (the Journey client, answering from a script
of statuses) and `FakeWorker` (the delivery worker, synchronous, over it)."""

from __future__ import annotations

import collections

from ..errors import RejectedCommandsError, TransientDeliveryError, UnauthorizedError
from ..journey.commands import Command
from ..runtime.checkpoint import Window


class ScriptedJourney:
    """Journey answering each request with the next status of `script` (then 200s).
    401/403 refuse the key, 400/422 reject, other non-2xx are transient."""

    def __init__(self, script: list[int] | None = None, retry_after: float | None = None) -> None:
        self.script = collections.deque(script or [])
        self.retry_after = retry_after
        self.accepted: list[Command] = []
        self.requests = 0
        self.closed = False

    def send(self, commands: list[Command]) -> None:
        self.requests += 1
        status = self.script.popleft() if self.script else 200
        if 200 <= status < 300:
            self.accepted.extend(commands)
            return
        if status in (401, 403):
            raise UnauthorizedError(f"Journey refused the account key ({status})", status=status)
        if status in (400, 422):
            raise RejectedCommandsError(f"rejected ({status})", status=status, errors={})
        raise TransientDeliveryError(
            f"Journey answered {status}",
            reason="throttled" if status == 429 else "server_error",
            status=status,
            retry_after=self.retry_after,
        )

    def close(self) -> None:
        self.closed = True


class FakeWorker:
    """The delivery worker, synchronous: windows are delivered (one request each, in
    order) when the loop asks what is `completed`. A failed request leaves the window
    outstanding and `retrying` set; the next call tries again."""

    def __init__(self, journey: ScriptedJourney) -> None:
        self.journey = journey
        self.queue: collections.deque[Window] = collections.deque()
        self.submitted: list[Window] = []  # every window handed over, in order
        self.retrying = False
        self.failure: BaseException | None = None
        self._unauthorized = False
        self.stopped_at: float | None = None

    @property
    def unauthorized(self) -> bool:
        return self._unauthorized

    @property
    def outstanding(self) -> int:
        return len(self.queue)

    def submit(self, window: Window) -> None:
        self.queue.append(window)
        self.submitted.append(window)

    def completed(self) -> list[Window]:
        done = []
        while self.queue:
            window = self.queue[0]
            try:
                if window.commands:
                    self.journey.send(window.commands)
            except UnauthorizedError:
                self.retrying = self._unauthorized = True
                break
            except TransientDeliveryError:
                self.retrying = True
                break
            self.retrying = self._unauthorized = False
            done.append(self.queue.popleft())
        return done

    def wait_idle(self, timeout_s: float) -> bool:
        return not self.queue

    def stop(self, deadline: float) -> None:
        self.stopped_at = deadline

    def join(self, timeout_s: float) -> None:
        pass
