"""Producing records to Kafka for the demo, the tests and the benchmarks: paced
(`produce`) or all at once with each partition's end offset (`produce_all`); and
`client_config`, the settings of the tools' own Kafka clients."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from confluent_kafka import Producer

from .. import logs


def client_config(bootstrap: str, **config: Any) -> dict[str, Any]:
    """A tool's Kafka client settings: librdkafka's log lines go through the JSON logger
    (`ofsys.kafka`), not raw onto stderr; Tansu closing idle connections is not news."""
    return {
        "bootstrap.servers": bootstrap,
        "logger": logs.get("kafka"),
        "log.connection.close": False,
        **config,
    }


def produce(
    producer: Producer,
    topic: str,
    records: Iterator[tuple[str, bytes]],
    count: int,
    rate: float | None = None,
) -> int:
    """Produce `count` records, paced to `rate` per second when given; returns the count."""
    started = time.monotonic()
    sent = 0
    for key, value in records:
        if sent >= count:
            break
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        sent += 1
        if rate and sent % 100 == 0:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
            producer.poll(0)
    producer.flush(30)
    return sent


def produce_all(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[str | None, bytes | None]],
    *,
    timeout_s: float = 120.0,
    **config: Any,
) -> dict[int, int]:
    """Produce `records` in order, batched (fast), partitioned with murmur2 like the
    shop's Java producers; each partition's end offset, from the delivery reports.
    Raises RuntimeError when the broker did not take them all within `timeout_s`.

    Tansu quirk (docs: tests/README.md): with batches its high watermark is the base
    offset of the last batch plus one, so callers compare committed offsets with these
    ends, never with watermarks."""
    producer = Producer(
        client_config(
            bootstrap,
            **{
                "linger.ms": 20,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 500_000,
                "partitioner": "murmur2_random",
                **config,
            },
        )
    )
    ends: dict[int, int] = {}
    errors: list[str] = []
    count = 0

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
            return
        partition: int = msg.partition()
        ends[partition] = max(ends.get(partition, 0), msg.offset() + 1)

    deadline = time.monotonic() + timeout_s
    for key, value in records:
        count += 1
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the broker took no more records") from None
                producer.poll(0.05)
    remaining = producer.flush(max(deadline - time.monotonic(), 1.0))
    if remaining or errors or sum(ends.values()) != count:
        raise RuntimeError(f"producing failed: {remaining} pending, {errors[:3]}, ends {ends}")
    return ends
