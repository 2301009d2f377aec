"""The dead-letter topic: bad records and rejected commands, never silently dropped.

A record keeps its original key and value; headers name the reason (a fixed slug),
the error, and where it came from. Dead letters are produced asynchronously and
flushed before each offset commit, so a commit never covers a dead letter that the
broker did not take.
"""

from __future__ import annotations

from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from .dedupe import Command
from .errors import PipelineError
from .metrics import Metrics


class DeadLetters:
    def __init__(self, producer: Producer, topic: str, source_topic: str, metrics: Metrics) -> None:
        self._producer = producer
        self._topic = topic
        self._source = source_topic.encode()
        self._metrics = metrics
        self._failed: list[str] = []
        self.count = 0

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._failed.append(str(err))

    def _produce(
        self,
        key: bytes | str | None,
        value: bytes | None,
        reason: str,
        headers: list[tuple[str, Any]],
    ) -> None:
        self._metrics.dead_letters.labels(reason).inc()
        self.count += 1
        headers.append(("ofsys.reason", reason.encode()))
        headers.append(("ofsys.source.topic", self._source))
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    value=value,
                    key=key,
                    headers=headers,
                    on_delivery=self._on_delivery,
                )
                return
            except BufferError:  # local queue full: let the broker catch up
                self._producer.poll(0.1)

    def record(self, msg: Message, reason: str, error: str) -> None:
        self._produce(
            msg.key(),
            msg.value(),
            reason,
            [
                ("ofsys.error", error.encode()),
                ("ofsys.source.partition", str(msg.partition()).encode()),
                ("ofsys.source.offset", str(msg.offset()).encode()),
            ],
        )

    def command(self, command: Command, message: str) -> None:
        self._produce(
            command["cartId"],
            orjson.dumps(command),
            "journey-rejected",
            [("ofsys.error", message.encode()), ("ofsys.command.id", str(command["id"]).encode())],
        )

    def flush(self, timeout_s: float) -> None:
        """Wait until the broker has every dead letter; raise if it refused any."""
        remaining = self._producer.flush(timeout_s)
        if remaining or self._failed:
            detail = self._failed[0] if self._failed else f"{remaining} still queued"
            self._failed.clear()
            raise PipelineError(f"dead-letter topic {self._topic} did not take records: {detail}")
