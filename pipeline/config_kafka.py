"""Kafka client settings: `OFSYS_KAFKA_*` variables split per client, Kafka Connect's way.

`OFSYS_KAFKA_<PROPERTY>` is shared by every client; `OFSYS_KAFKA_CONSUMER_<PROPERTY>`,
`OFSYS_KAFKA_PRODUCER_<PROPERTY>` and `OFSYS_KAFKA_ADMIN_<PROPERTY>` are for one kind of
client and win over the shared value. librdkafka scopes each property (its
CONFIGURATION.md, column C/P): a consumer-only or producer-only property reaches only
that kind of client, so none logs CONFWARN "... will be ignored by this ... instance";
one given to the wrong client's prefix is a configuration error. The admin client is a
producer underneath, but takes only the common properties. Names librdkafka does not
know at all are left for librdkafka to refuse when the client is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

from .errors import ConfigError

KafkaClient = Literal["consumer", "producer", "admin"]
CLIENTS: tuple[KafkaClient, ...] = get_args(KafkaClient)
KAFKA_PREFIX = "OFSYS_KAFKA_"
# librdkafka's default is 1000 ms: once its prefetch queue is over queued.min.messages or
# queued.max.messages.kbytes, a partition's next fetch waits that long, however soon the
# application drains the queue. A consumer that keeps the queue bounded and reads faster
# than one fetch a second then idles: the loop spent 44 % of its wall time in consume()
# with nothing to read (docs/benchmarks.md, 2026-12-05, X12). 20 ms is a fetch-state
# check fifty times a second while the queue is full, nothing while it is not.
FETCH_QUEUE_BACKOFF_MS = 20

# librdkafka 2.x CONFIGURATION.md, global and topic tables, C/P = "C" (callbacks, which
# cannot be set from the environment, left out).
CONSUMER_ONLY = frozenset(
    {
        "group.id",
        "group.instance.id",
        "partition.assignment.strategy",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "group.protocol.type",
        "group.protocol",
        "group.remote.assignor",
        "coordinator.query.interval.ms",
        "max.poll.interval.ms",
        "enable.auto.commit",
        "auto.commit.interval.ms",
        "enable.auto.offset.store",
        "queued.min.messages",
        "queued.max.messages.kbytes",
        "fetch.wait.max.ms",
        "fetch.queue.backoff.ms",
        "fetch.message.max.bytes",
        "max.partition.fetch.bytes",
        "fetch.max.bytes",
        "fetch.min.bytes",
        "fetch.error.backoff.ms",
        "offset.store.method",
        "isolation.level",
        "enable.partition.eof",
        "check.crcs",
        "auto.commit.enable",
        "auto.offset.reset",
        "offset.store.path",
        "offset.store.sync.interval.ms",
        "consume.callback.max.messages",
    }
)
# ... and C/P = "P".
PRODUCER_ONLY = frozenset(
    {
        "transactional.id",
        "transaction.timeout.ms",
        "enable.idempotence",
        "enable.gapless.guarantee",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
        "queue.buffering.max.ms",
        "linger.ms",
        "message.send.max.retries",
        "retries",
        "queue.buffering.backpressure.threshold",
        "compression.codec",
        "compression.type",
        "compression.level",
        "batch.num.messages",
        "batch.size",
        "delivery.report.only.error",
        "sticky.partitioning.linger.ms",
        "request.required.acks",
        "acks",
        "request.timeout.ms",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "queuing.strategy",
        "produce.offset.report",
        "partitioner",
    }
)


def scope(prop: str) -> KafkaClient | None:
    """The one kind of client `prop` is for, or None for a common property."""
    if prop in CONSUMER_ONLY:
        return "consumer"
    if prop in PRODUCER_ONLY:
        return "producer"
    return None


def _property(rest: str) -> str:
    return rest.lower().replace("_", ".")


def is_kafka_variable(name: str) -> bool:
    """Whether `name` is an OFSYS_KAFKA_ passthrough (not one of the declared options)."""
    rest = name[len(KAFKA_PREFIX) :] if name.startswith(KAFKA_PREFIX) else ""
    return bool(rest) and all(rest != f"{client.upper()}_" for client in CLIENTS)


def read(
    variables: Mapping[str, str],
) -> tuple[dict[str, str], dict[KafkaClient, dict[str, str]]]:
    """The shared properties and each client's overrides from `OFSYS_KAFKA_*` variables
    (declared options already taken out); ConfigError for a property given to a client
    it is not for."""
    shared: dict[str, str] = {}
    overrides: dict[KafkaClient, dict[str, str]] = {}
    for name, value in variables.items():
        rest = name[len(KAFKA_PREFIX) :]
        client = next((c for c in CLIENTS if rest.startswith(f"{c.upper()}_")), None)
        if client is None:
            shared[_property(rest)] = value
            continue
        prop = _property(rest[len(client) + 1 :])
        owner = scope(prop)
        if owner is not None and owner != client:
            raise ConfigError(
                f"{name}: {prop} is a {owner} property, not for the {client} client "
                f"(use {KAFKA_PREFIX}{owner.upper()}_{rest[len(client) + 1 :]})"
            )
        overrides.setdefault(client, {})[prop] = value
    return shared, overrides


def for_client(
    client: KafkaClient, shared: Mapping[str, str], overrides: Mapping[str, str]
) -> dict[str, str]:
    """What `client` takes: the shared properties in its scope, then its own overrides."""
    config = {prop: value for prop, value in shared.items() if scope(prop) in (None, client)}
    config.update(overrides)
    return config
