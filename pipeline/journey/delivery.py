"""Deliver batches to Journey: the HTTP client and the retry policy of the contract.

`JourneyClient.send` makes one request and turns the answer into nothing (accepted)
or a typed DeliveryError. `Delivery.deliver` owns the contract's response table:
retry transient failures with exponential backoff and full jitter (honouring
Retry-After), dead-letter named rejections and re-send the rest, split unnamed
rejections to isolate them, and wait out 401/403 without committing or dropping.
Waiting is done through `wait`, which the run loop implements by pausing consumption
and keeping the group membership alive: that is the backpressure.
"""

from __future__ import annotations

import collections
import email.utils
import queue
import random
import threading
import time
from collections.abc import Callable

import orjson
import urllib3

from .. import logs
from ..config import Secret
from ..errors import (
    RejectedCommandsError,
    ShutdownTimeoutError,
    TransientDeliveryError,
    UnauthorizedError,
)
from ..metrics import Metrics
from ..runtime.checkpoint import Window
from .batch import Batch, batches
from .commands import Command

log = logs.get("deliver")
_TRANSIENT = {408: "unavailable", 425: "unavailable", 429: "throttled"}
_BASE_BACKOFF_S = 0.2


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _rejections(body: bytes) -> dict[str, str]:
    try:
        errors = orjson.loads(body).get("errors") or []
        return {str(e["id"]): str(e.get("message", "rejected")) for e in errors if "id" in e}
    except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError):
        return {}


class JourneyClient:
    """One Journey endpoint over pooled keep-alive connections."""

    def __init__(self, url: str, account_key: Secret, timeout_s: float) -> None:
        self._url = url
        self._pool = urllib3.PoolManager(
            num_pools=1,
            maxsize=2,
            retries=False,
            timeout=urllib3.Timeout(connect=min(timeout_s, 5.0), read=timeout_s),
        )
        self._headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {account_key.reveal()}",
        }

    def send(self, batch: Batch) -> None:
        headers = {**self._headers, "Idempotency-Key": batch.batch_id}
        try:
            response = self._pool.request("POST", self._url, body=batch.body, headers=headers)
        except urllib3.exceptions.TimeoutError as exc:
            raise TransientDeliveryError(
                "Journey timed out", reason="timeout", retry_after=None
            ) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise TransientDeliveryError(
                f"Journey unreachable: {type(exc).__name__}", reason="connection", retry_after=None
            ) from exc
        status = response.status
        if 200 <= status < 300:
            return
        if status in (400, 422):
            raise RejectedCommandsError(
                f"Journey rejected the batch ({status})",
                status=status,
                errors=_rejections(response.data),
            )
        if status in (401, 403):
            raise UnauthorizedError(f"Journey refused the account key ({status})", status=status)
        # Statuses outside the contract are retried too: dropping is never the answer.
        reason = _TRANSIENT.get(status) or ("server_error" if status >= 500 else "unavailable")
        raise TransientDeliveryError(
            f"Journey answered {status}",
            reason=reason,
            status=status,
            retry_after=retry_after(response.headers.get("Retry-After")),
        )

    def close(self) -> None:
        self._pool.clear()


class Delivery:
    """The contract's response table, applied until every command is accepted or
    dead-lettered. Never drops a batch: only `wait` can end it (by raising)."""

    def __init__(
        self,
        client: JourneyClient,
        metrics: Metrics,
        *,
        max_backoff_s: float,
        wait: Callable[[float], None],
        dead_letter: Callable[[Command, str], None],
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._max_backoff_s = max_backoff_s
        self._wait = wait
        self._dead_letter = dead_letter
        self.unauthorized = False

    def deliver(self, batch: Batch) -> None:
        pending = collections.deque([batch])
        attempt = 0
        while pending:
            current = pending[0]
            started = time.monotonic()
            try:
                self._client.send(current)
            except TransientDeliveryError as exc:
                self._metrics.batches.labels("retried").inc()
                self._metrics.retries.labels(exc.reason).inc()
                attempt += 1
                delay = exc.retry_after
                if delay is None:
                    delay = random.uniform(
                        0, min(self._max_backoff_s, _BASE_BACKOFF_S * 2**attempt)
                    )
                log.warning(
                    "Journey delivery failed, will retry",
                    extra={
                        "batch_id": current.batch_id,
                        "reason": exc.reason,
                        "status": exc.status,
                        "retry_in_s": round(delay, 3),
                    },
                )
                self._wait(delay)
                continue
            except UnauthorizedError as exc:
                self._metrics.batches.labels("unauthorized").inc()
                if not self.unauthorized:
                    log.error(
                        "Journey refused the account key; delivery stopped until it accepts",
                        extra={"status": exc.status},
                    )
                self.unauthorized = True
                self._metrics.unauthorized.set(1)
                self._wait(self._max_backoff_s)
                continue
            except RejectedCommandsError as exc:
                self._metrics.batches.labels("rejected").inc()
                pending.popleft()
                named = set(exc.errors) & {command["id"] for command in current.commands}
                if named:
                    for command in current.commands:
                        if command["id"] in named:
                            self._dead_letter(command, exc.errors[command["id"]])
                    rest = current.without(named)
                    if rest is not None:
                        pending.appendleft(rest)
                elif len(current) > 1:
                    pending.extendleft(reversed(current.halves()))
                else:
                    self._dead_letter(current.commands[0], str(exc))
                continue
            self._accepted(current, time.monotonic() - started)
            pending.popleft()
            attempt = 0

    def _accepted(self, batch: Batch, duration: float) -> None:
        metrics = self._metrics
        if self.unauthorized:
            log.info("Journey accepts the account key again")
            self.unauthorized = False
            metrics.unauthorized.set(0)
        metrics.batches.labels("accepted").inc()
        metrics.bytes_sent.inc(len(batch.body))
        metrics.request_duration.observe(duration)
        now_ms = time.time() * 1000.0
        calls: dict[str, int] = {}
        observe = metrics.latency.observe
        for command in batch.commands:
            call = command["call"]
            calls[call] = calls.get(call, 0) + 1
            observe((now_ms - command["ts"]) / 1000.0)
        for call, count in calls.items():
            metrics.commands.labels(call).inc(count)


class DeliveryWorker:
    """Delivers sealed windows in order on its own thread, so the loop keeps consuming
    while Journey answers; the loop pauses consumption when `backlogged`."""

    def __init__(
        self,
        client: JourneyClient,
        metrics: Metrics,
        dead_letter: Callable[[Command, str], None],
        *,
        max_commands: int,
        max_bytes: int,
        max_backoff_s: float,
    ) -> None:
        self._delivery = Delivery(
            client, metrics, max_backoff_s=max_backoff_s, wait=self._sleep, dead_letter=dead_letter
        )
        self._max_commands = max_commands
        self._max_bytes = max_bytes
        self._queue: queue.Queue[Window | None] = queue.Queue()
        self._done: queue.Queue[Window] = queue.Queue()
        self._outstanding = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = float("inf")
        self.retrying = False
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="ofsys-deliver", daemon=True)
        self._thread.start()

    @property
    def unauthorized(self) -> bool:
        return self._delivery.unauthorized

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def submit(self, window: Window) -> None:
        with self._lock:
            self._outstanding += 1
        self._queue.put(window)

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
        while self._outstanding and self.failure is None and time.monotonic() < end:
            time.sleep(0.005)
        return self._outstanding == 0

    def stop(self, deadline: float) -> None:
        """Finish what is queued, but give up retrying once `deadline` (monotonic) passes."""
        self._deadline = deadline
        self._stop.set()
        self._queue.put(None)

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _sleep(self, seconds: float) -> None:
        self.retrying = True
        end = time.monotonic() + seconds
        while (remaining := end - time.monotonic()) > 0:
            if time.monotonic() >= self._deadline:
                raise ShutdownTimeoutError("shutdown deadline passed while Journey retried")
            self._stop.wait(min(remaining, 0.1))

    def _loop(self) -> None:
        while (window := self._queue.get()) is not None:
            try:
                for batch in batches(window.commands, self._max_commands, self._max_bytes):
                    self._delivery.deliver(batch)
            except ShutdownTimeoutError:
                log.warning(
                    "shutdown deadline passed; the last windows stay uncommitted "
                    "and will be processed again",
                    extra={"events": window.events},
                )
                return
            except BaseException as exc:  # surfaced to the loop, which stops the process
                self.failure = exc
                return
            self.retrying = False
            self._done.put(window)
            with self._lock:
                self._outstanding -= 1
