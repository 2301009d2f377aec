"""The dead-letter topic: bad records and rejected commands, never silently dropped.

A record keeps its original key and value; headers name the reason (a fixed slug),
the error, and where it came from. Dead letters go through the shared `Outputs`
producer, flushed before each offset commit, so a commit never covers a dead letter
that the broker did not take.
"""

from __future__ import annotations

from typing import Any

import orjson
from confluent_kafka import Message

from .dedupe import Command
from .metrics import Metrics
from .outputs import Outputs


class DeadLetters:
    def __init__(self, outputs: Outputs, topic: str, source_topic: str, metrics: Metrics) -> None:
        self._outputs = outputs
        self._topic = topic
        self._source = source_topic.encode()
        self._metrics = metrics

    def _produce(
        self,
        key: bytes | str | None,
        value: bytes | None,
        reason: str,
        headers: list[tuple[str, Any]],
    ) -> None:
        self._metrics.dead_letters.labels(reason).inc()
        headers.append(("ofsys.reason", reason.encode()))
        headers.append(("ofsys.source.topic", self._source))
        self._outputs.produce(self._topic, key, value, headers=headers)

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
