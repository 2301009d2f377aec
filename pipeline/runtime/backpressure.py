"""Backpressure: when the loop stops reading, and when a broker outage ends it.

Owns the pause of the assigned partitions and the watch on the broker. Invariant:
consumption is paused while Journey retries (408/425/429/5xx, timeouts, 401/403), more
than MAX_OUTSTANDING_WINDOWS windows wait for Journey or the broker for longer than
HOLD_MAX_S, or the broker is away; it resumes every partition but those held at a seal
mark; polling goes on all the while, so the group membership and the rebalance
callbacks stay alive. Past OFSYS_BROKER_OUTAGE_S without the broker it raises
BrokerOutageError.
Windows piling up for less than HOLD_MAX_S is the normal flow control of a catch-up: the
loop then holds (`holding`: it reads nothing, the partitions stay resumed) instead of
pausing. A pause makes librdkafka drop every partition's prefetched records, and after
the resume the loop waited for them to be fetched again, with nothing to read: heavy
carts ran 27,953-33,434 events/s with pauses and 34,157-42,195 with the hold
(`ofsys-pipeline bench --shape heavy-carts`, docs/benchmarks.md, 2026-12-07 (night)).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import logs
from ..config import Settings
from ..errors import BrokerOutageError
from ..metrics import Metrics
from ..server import Health
from .checkpoint import Checkpoint, Source
from .lag import BrokerWatch

if TYPE_CHECKING:
    from .ports import Clock, Consumer, Worker

log = logs.get("app")
# At most so many windows wait for Journey or the broker before consumption pauses
# (a window's own size is bounded in process.py).
MAX_OUTSTANDING_WINDOWS = 2
# How long the loop holds (reads nothing, partitions not paused) while windows pile up,
# before it pauses: far inside max.poll.interval.ms and /readyz's poll staleness
HOLD_MAX_S = 1.0


class Backpressure:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        health: Health,
        *,
        consumer: Consumer,
        worker: Worker,
        checkpoint: Checkpoint,
        held: set[Source],
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.health = health
        self._consumer = consumer
        self._worker = worker
        self._checkpoint = checkpoint
        self._held = held
        self.watch = BrokerWatch()
        self._clock = clock
        self.paused = False
        self.holding = False  # windows pile up: the loop reads nothing, not paused
        self._full_since: float | None = None
        self._outage_logged = False

    def watch_broker(self) -> None:
        """Ride out a broker outage: report it, and give up only past the limit."""
        down = self.watch.down_for()
        self.health.broker_down_s = down
        self.metrics.broker_up.set(0 if down else 1)
        if down and not self._outage_logged:
            self._outage_logged = True
            log.warning(
                "Kafka broker unreachable; pausing, keeping state and uncommitted windows",
                extra={"seconds": round(down, 1), "limit_s": self.settings.broker_outage_s},
            )
        elif not down and self._outage_logged:
            self._outage_logged = False
            log.info("Kafka broker answers again; resuming")
        if down > self.settings.broker_outage_s:
            log.error(
                "Kafka broker unreachable longer than OFSYS_BROKER_OUTAGE_S; exiting "
                "without committing past what the broker took",
                extra={"seconds": round(down, 1), "limit_s": self.settings.broker_outage_s},
            )
            raise BrokerOutageError(
                f"Kafka broker unreachable for {down:.0f} s (OFSYS_BROKER_OUTAGE_S)"
            )

    def apply(self) -> None:
        """Hold while windows pile up (up to HOLD_MAX_S); pause every assigned partition
        while Journey retries, windows pile up longer, or the broker is away; resume all
        but those waiting for a seal mark."""
        worker = self._worker
        self.health.unauthorized = worker.unauthorized
        was_held_back = self.paused or self.holding  # what ofsys_backpressure says
        full = (
            worker.outstanding > MAX_OUTSTANDING_WINDOWS
            or self._checkpoint.waiting > MAX_OUTSTANDING_WINDOWS
        )
        if not full:
            self._full_since = None
        elif self._full_since is None:
            self._full_since = self._clock.monotonic()
        stalled = worker.retrying or self.health.broker_down_s > 0
        behind = stalled or (
            self._full_since is not None
            and self._clock.monotonic() - self._full_since >= HOLD_MAX_S
        )
        self.holding = full and not behind
        if behind != self.paused:
            log.debug("backpressure" if behind else "resuming")
        if behind and not self.paused:
            self._consumer.pause(self._consumer.assignment())
            self.paused = True
        elif not behind and self.paused:
            held = self._held
            self._consumer.resume(
                [tp for tp in self._consumer.assignment() if (tp.topic, tp.partition) not in held]
            )
            self.paused = False
        held_back = self.paused or self.holding
        if held_back != was_held_back:
            self.metrics.backpressure.set(int(held_back))
