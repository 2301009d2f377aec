"""Topic administration the pipeline needs at start: find the input, create its outputs.

Owns topic creation and partition counts. Invariant: an existing topic is never
altered; a topic is created only with the partition count it is asked for.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewTopic,
)

from ..errors import PipelineError


def partitions(admin: AdminClient, topic: str, timeout_s: float = 10.0) -> int | None:
    """The topic's partition count, or None when it does not exist."""
    try:
        # All topics, not `list_topics(topic)`: a metadata request naming a topic lets
        # brokers with auto-creation on create it, with their default partition count.
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise PipelineError(f"Kafka unreachable: {exc.args[0]}") from exc
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        return None
    return len(found.partitions)


def ensure(
    admin: AdminClient,
    topic: str,
    num_partitions: int,
    config: dict[str, str] | None = None,
    timeout_s: float = 10.0,
) -> None:
    """Create `topic` unless it exists; an existing topic is left as it is."""
    if partitions(admin, topic, timeout_s) is not None:
        return
    futures = admin.create_topics(
        [
            NewTopic(
                topic, num_partitions=num_partitions, replication_factor=-1, config=config or {}
            )
        ],
        operation_timeout=timeout_s,
    )
    try:
        futures[topic].result(timeout_s)
    except KafkaException as exc:
        error: Any = exc.args[0]
        if getattr(error, "name", lambda: "")() != "TOPIC_ALREADY_EXISTS":
            raise PipelineError(f"cannot create topic {topic}: {error}") from exc
