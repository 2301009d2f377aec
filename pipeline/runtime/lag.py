"""Consumer lag, measured beside the loop: the broker's high watermark minus the
group's committed offset, per assigned partition, refreshed on an interval.

It runs in its own thread with its own clients because watermark and offset requests
block for a round trip each; on the loop they would stall consumption, and while the
loop waits on Journey (partitions paused) lag must still be reported. Each refresh is
also a probe of the broker: `BrokerWatch` hears of every answer (the loop's commits and
records count too), so a broker that stops answering is noticed even when idle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from .. import logs
from ..config import Settings
from ..metrics import Metrics

log = logs.get("lag")
BROKER_DOWN_AFTER_S = 20.0  # silence this long (4 refreshes) means the broker is away


class BrokerWatch:
    """When the broker last answered; shared by the loop and the lag thread."""

    def __init__(self, down_after_s: float = BROKER_DOWN_AFTER_S) -> None:
        self.down_after_s = down_after_s
        self.last_ok = time.monotonic()

    def ok(self) -> None:
        self.last_ok = time.monotonic()

    def down_for(self) -> float:
        """Seconds since the broker last answered, once past `down_after_s`; else 0."""
        silent = time.monotonic() - self.last_ok
        return silent if silent > self.down_after_s else 0.0


class LagMonitor:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        assigned: Callable[[], list[int]],
        committed_event_ms: Callable[[int], int | None],
        *,
        watch: BrokerWatch,
        interval_s: float = 5.0,
    ) -> None:
        self._watch = watch
        self._topic = settings.topic
        self._group = settings.group_id
        self._metrics = metrics
        self._assigned = assigned
        self._event_ms = committed_event_ms
        self._interval_s = interval_s
        self._admin = AdminClient(settings.kafka_config("admin"))
        self._watermarks = Consumer(
            settings.kafka_config(
                "consumer",
                **{"group.id": f"{settings.group_id}.lag-monitor", "enable.auto.commit": False},
            )
        )
        self._labels: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ofsys-lag", daemon=True)

    def start(self) -> LagMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._watermarks.close()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.refresh()
            except Exception as exc:  # a timeout or a broker error: try again next round
                log.warning("lag refresh failed", extra={"error": f"{type(exc).__name__}: {exc}"})

    def _committed(self, partitions: list[int]) -> dict[int, int]:
        request = ConsumerGroupTopicPartitions(
            self._group, [TopicPartition(self._topic, p) for p in partitions]
        )
        result = self._admin.list_consumer_group_offsets([request])[self._group].result(10)
        return {tp.partition: max(tp.offset, 0) for tp in result.topic_partitions}

    def refresh(self) -> None:
        partitions = self._assigned()
        if not partitions:
            self._admin.list_topics(timeout=5.0)  # a probe: the broker answers or not
            self._watch.ok()
        committed = self._committed(partitions) if partitions else {}
        if partitions:
            self._watch.ok()
        now_ms = time.time() * 1000.0
        labels = set()
        for partition in partitions:
            _, high = self._watermarks.get_watermark_offsets(
                TopicPartition(self._topic, partition), timeout=5.0, cached=False
            )
            lag = max(high - committed.get(partition, 0), 0)
            event_ms = self._event_ms(partition)
            label = str(partition)
            labels.add(label)
            self._metrics.lag_messages.labels(label).set(lag)
            self._metrics.lag_seconds.labels(label).set(
                0.0 if lag == 0 or event_ms is None else max(now_ms - event_ms, 0.0) / 1000.0
            )
        for label in self._labels - labels:  # partitions that moved to another member
            self._metrics.lag_messages.remove(label)
            self._metrics.lag_seconds.remove(label)
        self._labels = labels
