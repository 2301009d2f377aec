"""The contract's response table: what the pipeline does with each answer of Journey.

`Delivery.deliver` owns the response table (docs/journey-contract.md, "The response"):
retry transient failures with exponential backoff and full jitter (honouring
Retry-After), dead-letter named rejections and re-send the rest, halve unnamed
rejections until each rejected command is alone, and wait out 401/403 without
dead-lettering. Invariant: `deliver` returns only once every command of the batch was
accepted or dead-lettered, in their order; it never drops one, and only `wait` can end
it early (by raising). It talks to Journey through any `Transport` (client.py).
`DeliveryWorker` (worker.py) runs it on its lanes.
A `RateLimit` (ratelimit.py), when set, holds each request back with the same wait.
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Callable

from .. import logs
from ..errors import RejectedCommandsError, TransientDeliveryError, UnauthorizedError
from ..metrics import Metrics, observe_many
from .batch import Batch
from .client import JourneyClient, Transport
from .commands import Command
from .ratelimit import RateLimit

__all__ = ["Delivery", "JourneyClient", "Transport"]

log = logs.get("deliver")
_BASE_BACKOFF_S = 0.2


class Delivery:
    """The contract's response table, applied until every command is accepted or
    dead-lettered. Never drops a batch: only `wait` can end it (by raising).

    `unauthorized` is True from a 401/403 until the next accepted batch. `rng` draws
    the jitter (the module's random by default; tests pass a seeded one).
    """

    def __init__(
        self,
        transport: Transport,
        metrics: Metrics,
        *,
        max_backoff_s: float,
        wait: Callable[[float], None],
        dead_letter: Callable[[Command, str], None],
        rng: random.Random | None = None,
        limit: RateLimit | None = None,
    ) -> None:
        self._limit = limit
        self._transport = transport
        self._uniform = random.uniform if rng is None else rng.uniform
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
            if self._limit is not None:
                self._throttle(len(current))
            started = time.monotonic()
            try:
                with self._metrics.in_flight.track_inprogress():
                    self._transport.send(current)
            except TransientDeliveryError as exc:
                self._metrics.batches.labels("retried").inc()
                self._metrics.retries.labels(exc.reason).inc()
                attempt += 1
                delay = exc.retry_after
                if delay is None:
                    delay = self._uniform(0, min(self._max_backoff_s, _BASE_BACKOFF_S * 2**attempt))
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

    def _throttle(self, commands: int) -> None:
        """Wait, consumption paused (`wait` is the retries' wait), until this member's
        share of the group's rate limit lets a request of `commands` go."""
        assert self._limit is not None
        while (pause := self._limit.delay(commands)) > 0:
            self._wait(pause)
            self._metrics.throttled.inc(pause)

    def _accepted(self, batch: Batch, duration: float) -> None:
        metrics = self._metrics
        if self.unauthorized:
            log.info("Journey accepts the account key again")
            self.unauthorized = False
            metrics.unauthorized.set(0)
        metrics.batches.labels("accepted").inc()
        metrics.bytes_sent.inc(len(batch.body))
        metrics.request_duration.observe(duration)
        calls, ages = batch.tally(time.time() * 1000.0)
        observe_many(metrics.latency, ages)
        for call, count in calls.items():
            metrics.commands.labels(call).inc(count)
