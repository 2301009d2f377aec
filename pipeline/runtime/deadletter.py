"""The dead-letter topic: bad records and rejected commands, never silently dropped.

A record keeps its original key and value; headers name the reason (a fixed slug),
the error, and where it came from. A dead letter that the topic cannot take (larger
than its limit, or refused by the broker for any reason) goes again without its
value, with headers saying so: `ofsys.value.dropped` (why), `ofsys.value.size` and
`ofsys.value.sha256` (to find the original in the source topic). So no record can stop
the pipeline. Dead letters go through the shared `Outputs` producer, flushed before
each offset commit, so a commit never covers a dead letter the broker did not take.
"""

from __future__ import annotations

import hashlib

import orjson
from confluent_kafka import KafkaError

from .. import logs
from ..journey.commands import Command
from ..metrics import Metrics
from .outputs import Headers, Record
from .ports import Message, Outputs

log = logs.get("deadletter")


def _size(key: bytes | str | None, value: bytes | None, headers: Headers) -> int:
    return (
        len(key or b"")
        + len(value or b"")
        + sum(len(name) + len(data or b"") for name, data in headers)
    )


class DeadLetters:
    def __init__(self, outputs: Outputs, topic: str, source_topic: str, metrics: Metrics) -> None:
        self._outputs = outputs
        self._topic = topic
        self._source = source_topic.encode()
        self._metrics = metrics
        outputs.on_refused(topic, self._refused)

    def _produce(
        self,
        key: bytes | str | None,
        value: bytes | None,
        reason: str,
        headers: Headers,
    ) -> None:
        self._metrics.dead_letters.labels(reason).inc()
        headers.append(("ofsys.reason", reason.encode()))
        headers.append(("ofsys.source.topic", self._source))
        if value is not None and _size(key, value, headers) > self._outputs.limit(self._topic):
            self._without_value(value, "too-large", headers)
            value = None
        if _size(key, None, headers) > self._outputs.limit(self._topic):
            key = hashlib.sha256(key.encode() if isinstance(key, str) else key or b"").hexdigest()
        self._outputs.produce(self._topic, key, value, headers=headers)

    def _without_value(self, value: bytes, why: str, headers: Headers) -> None:
        """Headers that stand for a value left out: why, its size and its digest."""
        self._metrics.dead_letter_values_dropped.inc()
        headers.append(("ofsys.value.dropped", why.encode()))
        headers.append(("ofsys.value.size", str(len(value)).encode()))
        headers.append(("ofsys.value.sha256", hashlib.sha256(value).hexdigest().encode()))

    def _refused(self, record: Record, error: KafkaError) -> None:
        """The broker refused a dead letter: send it again without its value; one that
        was refused without a value has nowhere left to go, and is logged and counted."""
        value = record.value()
        headers: Headers = list(record.headers() or [])
        if value is None:
            self._metrics.dead_letters_refused.inc()
            log.error(
                "the dead-letter topic refused a record without a value; it is counted "
                "in ofsys_dead_letters_refused_total and not retried",
                extra={"topic": self._topic, "error": error.str(), "headers": len(headers)},
            )
            return
        self._without_value(value, error.name() or "refused", headers)
        self._outputs.produce(self._topic, record.key(), None, headers=headers)

    def record(self, msg: Message, reason: str, error: str) -> None:
        self._produce(
            msg.key(),
            msg.value(),
            reason,
            [
                ("ofsys.error", error[:1000].encode()),
                ("ofsys.source.partition", str(msg.partition()).encode()),
                ("ofsys.source.offset", str(msg.offset()).encode()),
            ],
        )

    def refused(self, record: Record, reason: str, error: str) -> None:
        """A record the pipeline meant to re-key that its topic refused."""
        self._produce(
            record.key(), record.value(), reason, [("ofsys.error", error[:1000].encode())]
        )

    def command(self, command: Command, message: str) -> None:
        self._produce(
            command["cartId"],
            orjson.dumps(command),
            "journey-rejected",
            [
                ("ofsys.error", message[:1000].encode()),
                ("ofsys.command.id", str(command["id"]).encode()),
            ],
        )
