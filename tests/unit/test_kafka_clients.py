"""The per-client Kafka settings on the real confluent-kafka clients: what librdkafka
itself says (its CONFWARN lines reach the `ofsys.kafka` logger) when each client is
built from `Settings.kafka_config`. No broker is needed: CONFWARN is logged when the
client is created, and served by the first poll."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from pipeline import config

SHARED_SCOPED = {
    # consumer-only properties given to the shared prefix (the README's examples)
    "OFSYS_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "OFSYS_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
    "OFSYS_KAFKA_AUTO_OFFSET_RESET": "earliest",
    # and producer-only ones
    "OFSYS_KAFKA_COMPRESSION_TYPE": "lz4",
    "OFSYS_KAFKA_BATCH_SIZE": "65536",
}


def _settings(**extra: str) -> config.Settings:
    return config.load(
        {
            "OFSYS_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # nothing listens: no broker
            "OFSYS_TOPIC": "t",
            "OFSYS_JOURNEY_URL": "http://journey.invalid/",
            "OFSYS_ACCOUNT_KEY": "A" * 32,
            **SHARED_SCOPED,
            **extra,
        }
    )


def _confwarns(caplog: pytest.LogCaptureFixture, build: dict[str, Any]) -> list[str]:
    """Build each client, poll it once (which serves librdkafka's log queue), and
    return the CONFWARN lines logged."""
    with caplog.at_level(logging.DEBUG, logger="ofsys.kafka"):
        for kind, conf in build.items():
            if kind == "consumer":
                consumer = Consumer({**conf, "group.id": "g"})
                consumer.poll(0.3)
                consumer.close()
            elif kind == "producer":
                producer = Producer(conf)
                producer.poll(0.3)
            else:
                admin = AdminClient(conf)
                admin.poll(0.3)
    return [r.getMessage() for r in caplog.records if "CONFWARN" in r.getMessage()]


def test_scoped_shared_properties_make_no_confwarn(caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings()
    build = {kind: settings.kafka_config(kind) for kind in ("consumer", "producer", "admin")}
    assert build["consumer"]["session.timeout.ms"] == "6000"
    assert build["producer"]["compression.type"] == "lz4"
    assert _confwarns(caplog, build) == []


def test_the_check_sees_confwarn_when_a_property_reaches_the_wrong_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The control: the shared properties unscoped (as before) make librdkafka warn, so
    the test above would see a CONFWARN if there were one."""
    settings = _settings()
    unscoped = {**settings.kafka_config("producer"), **settings.kafka}
    warnings = _confwarns(caplog, {"producer": unscoped})
    assert any("session.timeout.ms is a consumer property" in w for w in warnings), warnings


def test_the_consumer_waits_at_most_100_ms_per_fetch_unless_the_operator_says_otherwise() -> None:
    from pipeline.runtime.wiring import FETCH_WAIT_MAX_MS, consumer_config

    assert consumer_config(_settings())["fetch.wait.max.ms"] == FETCH_WAIT_MAX_MS == 100
    given = _settings(OFSYS_KAFKA_CONSUMER_FETCH_WAIT_MAX_MS="20")
    assert str(consumer_config(given)["fetch.wait.max.ms"]) == "20"
    assert consumer_config(given)["enable.auto.commit"] is False  # the guarantees still win


def test_the_consumer_fetches_4_mib_per_partition_unless_the_operator_says_otherwise() -> None:
    from pipeline.runtime.wiring import MAX_PARTITION_FETCH_BYTES, consumer_config

    assert consumer_config(_settings())["max.partition.fetch.bytes"] == 4 << 20
    assert MAX_PARTITION_FETCH_BYTES == 4 << 20
    given = _settings(OFSYS_KAFKA_CONSUMER_MAX_PARTITION_FETCH_BYTES="1048576")
    assert str(consumer_config(given)["max.partition.fetch.bytes"]) == "1048576"


def test_a_full_prefetch_queue_postpones_a_fetch_20_ms_not_librdkafkas_second() -> None:
    from pipeline.config_kafka import FETCH_QUEUE_BACKOFF_MS
    from pipeline.runtime.wiring import consumer_config

    assert consumer_config(_settings())["fetch.queue.backoff.ms"] == FETCH_QUEUE_BACKOFF_MS == 20
    given = _settings(OFSYS_KAFKA_CONSUMER_FETCH_QUEUE_BACKOFF_MS="5")
    assert str(consumer_config(given)["fetch.queue.backoff.ms"]) == "5"
