"""The pipeline's one producer: dead letters, changelog records (and re-keyed records),
produced asynchronously and made durable together before each offset commit."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from .config import Settings
from .errors import PipelineError


class Outputs:
    def __init__(self, settings: Settings) -> None:
        self._producer = Producer(
            settings.kafka_config(
                **{
                    "acks": "all",
                    "linger.ms": 50,
                    "client.id": "ofsys-pipeline-out",
                    "enable.idempotence": False,
                }
            )
        )
        self._failed: list[str] = []

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._failed.append(str(err))

    def produce(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        partition: int = -1,
        headers: list[tuple[str, Any]] | None = None,
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    partition=partition,
                    headers=headers,
                    on_delivery=self._on_delivery,
                )
                return
            except BufferError:  # local queue full: let the broker catch up
                self._producer.poll(0.1)

    def flush(self, timeout_s: float) -> None:
        """Wait until the broker has every record; raise if it refused any, so nothing
        that depends on them (an offset commit) goes ahead."""
        remaining = self._producer.flush(timeout_s)
        if remaining or self._failed:
            detail = self._failed[0] if self._failed else f"{remaining} still queued"
            self._failed.clear()
            raise PipelineError(f"the broker did not take the pipeline's records: {detail}")
