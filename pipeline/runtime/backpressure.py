"""Backpressure: when the loop stops reading, and when a broker outage ends it.

Owns the pause of the assigned partitions and the watch on the broker. Invariant:
consumption is paused while Journey retries (408/425/429/5xx, timeouts, 401/403), more
than MAX_OUTSTANDING_WINDOWS windows wait for Journey or the broker, or the broker is
away; it resumes every partition but those held at a seal mark; polling goes on all the
while, so the group membership and the rebalance callbacks stay alive. Past
OFSYS_BROKER_OUTAGE_S without the broker it raises BrokerOutageError.
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
    from .ports import Consumer, Worker

log = logs.get("app")
# At most so many windows wait for Journey or the broker before consumption pauses
# (a window's own size is bounded in process.py).
MAX_OUTSTANDING_WINDOWS = 2


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
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.health = health
        self._consumer = consumer
        self._worker = worker
        self._checkpoint = checkpoint
        self._held = held
        self.watch = BrokerWatch()
        self.paused = False
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
        """Pause every assigned partition while Journey retries, windows pile up, or the
        broker is away; resume all but those waiting for a seal mark."""
        worker = self._worker
        self.health.unauthorized = worker.unauthorized
        behind = (
            worker.retrying
            or worker.outstanding > MAX_OUTSTANDING_WINDOWS
            or self._checkpoint.waiting > MAX_OUTSTANDING_WINDOWS
            or self.health.broker_down_s > 0
        )
        if behind != self.paused:
            log.debug("backpressure" if behind else "resuming")
        if behind and not self.paused:
            self._consumer.pause(self._consumer.assignment())
            self.paused = True
            self.metrics.backpressure.set(1)
        elif not behind and self.paused:
            held = self._held
            self._consumer.resume(
                [tp for tp in self._consumer.assignment() if (tp.topic, tp.partition) not in held]
            )
            self.paused = False
            self.metrics.backpressure.set(0)
