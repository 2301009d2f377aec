"""config: OFSYS_* environment and flags -> Settings; and the CLI's exit code 2."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from pipeline.config import OPTIONS, Secret, Settings, add_arguments, load
from pipeline.errors import ConfigError

KEY = "Ab3dEf6hIj9lMn2pQr5tUv8xYz1bCd4F"
assert len(KEY) == 32
GOOD = {
    "OFSYS_TOPIC": "site-events",
    "OFSYS_JOURNEY_URL": "https://journey.example.ru/v1/commands",
    "OFSYS_ACCOUNT_KEY": KEY,
}


def env(**overrides: str | None) -> dict[str, str]:
    out = {**GOOD, "PATH": "/usr/bin", "HOME": "/root"}  # non-OFSYS variables are ignored
    for name, value in overrides.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def config_error(environ: dict[str, str], flags: dict[str, str | None] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(environ, flags)
    return str(info.value)


def test_load_with_defaults() -> None:
    settings = load(env())
    assert settings == Settings(
        kafka_bootstrap_servers="127.0.0.1:9092",
        topic="site-events",
        group_id="ofsys-pipeline",
        journey_url="https://journey.example.ru/v1/commands",
        account_key=Secret(KEY),
        dlq_topic="site-events.dlq",
        schema_registry_url=None,
        flush_interval_ms=1000,
        batch_max_commands=500,
        batch_max_bytes=1_000_000,
        metrics_port=9400,
        max_record_bytes=1_000_000,
        shutdown_timeout_s=25.0,
        journey_timeout_s=10.0,
        retry_max_backoff_s=30.0,
        journey_max_in_flight=8,
        journey_max_requests_per_s=0.0,
        journey_max_commands_per_s=0.0,
        dlq_retention_ms=7 * 86_400_000,
        changelog=True,
        retention_carts_s=30 * 86400,
        retention_event_ids_s=86400,
        retention_orders_s=90 * 86400,
        abandoned_cart_after_s=1800,
        abandoned_cart_grace_s=3600,
        browse_abandoned_after_s=3600,
        triggers_topic="site-events.triggers",
        partitioner="murmur2",
        consume_batch=2000,
        broker_outage_s=300.0,
        max_clock_skew_s=300,
        max_quantity=10_000,
        log_level="INFO",
        kafka={},
    )
    assert settings.account_key.reveal() == KEY
    assert settings.changelog_topic == "ofsys-pipeline.site-events.changelog"
    assert settings.repartition_topic == "ofsys-pipeline.site-events.repartition"


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_boolean_options_refuse_other_words(value: str) -> None:
    with pytest.raises(ConfigError, match="OFSYS_CHANGELOG must be true or false"):
        load(env(OFSYS_CHANGELOG=value))


def test_partitioner_is_one_of_two() -> None:
    assert load(env(OFSYS_PARTITIONER="crc32")).partitioner == "crc32"
    with pytest.raises(ConfigError, match="OFSYS_PARTITIONER must be murmur2"):
        load(env(OFSYS_PARTITIONER="random"))


def test_load_parses_every_option_from_the_environment() -> None:
    settings = load(
        env(
            OFSYS_KAFKA_BOOTSTRAP_SERVERS="k1:9092,k2:9092",
            OFSYS_GROUP_ID="g",
            OFSYS_DLQ_TOPIC="dead.letters",
            OFSYS_SCHEMA_REGISTRY_URL="http://registry:8081",
            OFSYS_FLUSH_INTERVAL_MS="250",
            OFSYS_BATCH_MAX_COMMANDS="7",
            OFSYS_BATCH_MAX_BYTES="4096",
            OFSYS_METRICS_PORT="0",
            OFSYS_MAX_RECORD_BYTES="100",
            OFSYS_SHUTDOWN_TIMEOUT_S="2.5",
            OFSYS_JOURNEY_TIMEOUT_S="0.5",
            OFSYS_RETRY_MAX_BACKOFF_S="3",
            OFSYS_CONSUME_BATCH="10",
            OFSYS_LOG_LEVEL="debug",
        )
    )
    assert (
        settings.kafka_bootstrap_servers,
        settings.group_id,
        settings.dlq_topic,
        settings.schema_registry_url,
        settings.flush_interval_ms,
        settings.batch_max_commands,
        settings.batch_max_bytes,
        settings.metrics_port,
        settings.max_record_bytes,
        settings.shutdown_timeout_s,
        settings.journey_timeout_s,
        settings.retry_max_backoff_s,
        settings.consume_batch,
        settings.log_level,
    ) == (
        "k1:9092,k2:9092",
        "g",
        "dead.letters",
        "http://registry:8081",
        250,
        7,
        4096,
        0,
        100,
        2.5,
        0.5,
        3.0,
        10,
        "DEBUG",
    )


def test_flags_win_over_the_environment() -> None:
    other_key = "Z" * 32
    flags: dict[str, str | None] = {
        "topic": "from-flag",
        "account_key": other_key,
        "flush_interval_ms": "5",
        "group_id": None,  # argparse leaves unset flags None: the environment fills in
    }
    settings = load(env(OFSYS_FLUSH_INTERVAL_MS="900", OFSYS_GROUP_ID="from-env"), flags)
    assert settings.topic == "from-flag"
    assert settings.dlq_topic == "from-flag.dlq"
    assert settings.account_key.reveal() == other_key
    assert settings.flush_interval_ms == 5
    assert settings.group_id == "from-env"


def test_a_flag_can_supply_a_required_option() -> None:
    settings = load(env(OFSYS_TOPIC=None), {"topic": "t"})
    assert settings.topic == "t"


def test_flags_from_argparse() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--topic", "x", "--batch-max-bytes", "2048"])
    settings = load(env(), vars(args))
    assert settings.topic == "x"
    assert settings.batch_max_bytes == 2048
    assert {option.flag for option in OPTIONS} >= {"--account-key", "--journey-url", "--topic"}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("OFSYS_TOPIC", "OFSYS_TOPIC is required (input topic of Avro site events)"),
        ("OFSYS_JOURNEY_URL", "OFSYS_JOURNEY_URL is required (Journey ingest URL (POST))"),
        (
            "OFSYS_ACCOUNT_KEY",
            "OFSYS_ACCOUNT_KEY is required (Journey account key: 32 letters and digits)",
        ),
    ],
)
def test_missing_required_names_the_variable(name: str, message: str) -> None:
    assert config_error(env(**{name: None})) == message


@pytest.mark.parametrize(
    "bad_key",
    [
        KEY[:31],
        KEY + "Q",
        KEY[:31] + "-",
        KEY[:31] + "é",
        " " + KEY[:31],
        KEY[:16] + " " + KEY[17:],
        "",
    ],
)
def test_malformed_key_is_an_error_without_the_key(bad_key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(env(OFSYS_ACCOUNT_KEY=bad_key))
    message = str(info.value)
    assert message == (
        f"OFSYS_ACCOUNT_KEY must be exactly 32 letters and digits (got {len(bad_key)} characters)"
    )
    if bad_key:
        assert bad_key not in message
        assert bad_key.strip()[:8] not in message
        printed = "".join(traceback.format_exception(info.value))
        assert bad_key.strip()[:8] not in printed  # not in a chained exception either


def test_malformed_key_as_a_flag_names_the_flag() -> None:
    bad = "x" * 12
    message = config_error(env(), {"account_key": bad})
    assert message == "--account-key must be exactly 32 letters and digits (got 12 characters)"
    assert bad not in message


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("journey.example.ru/v1", "must be an http(s) URL with a host"),
        ("ftp://journey.example.ru/", "must be an http(s) URL with a host"),
        ("http://", "must be an http(s) URL with a host"),
        ("https:///path", "must be an http(s) URL with a host"),
        ("http://journey:99999/", "has an invalid port"),
        ("http://journey:port/", "has an invalid port"),
    ],
)
def test_malformed_url(url: str, problem: str) -> None:
    assert config_error(env(OFSYS_JOURNEY_URL=url)) == f"OFSYS_JOURNEY_URL {problem}"
    assert config_error(env(OFSYS_SCHEMA_REGISTRY_URL=url)) == (
        f"OFSYS_SCHEMA_REGISTRY_URL {problem}"
    )


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/journey", "https://journey.example.ru", "http://[::1]:80/"]
)
def test_good_urls(url: str) -> None:
    assert load(env(OFSYS_JOURNEY_URL=url)).journey_url == url


@pytest.mark.parametrize(
    "name", ["OFSYS_TOPICS", "OFSYS_ACCOUNTKEY", "OFSYS_KAFKA_", "OFSYS_", "OFSYS_journey_url"]
)
def test_unknown_ofsys_variable_is_an_error(name: str) -> None:
    assert config_error(env(**{name: "x"})) == f"unknown option {name}"


def test_unknown_variable_error_does_not_echo_its_value() -> None:
    assert KEY not in config_error(env(OFSYS_ACOUNT_KEY=KEY))


def test_kafka_passthrough() -> None:
    settings = load(
        env(
            OFSYS_KAFKA_SOCKET_TIMEOUT_MS="6000",
            OFSYS_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            OFSYS_KAFKA_BOOTSTRAP_SERVERS="b:9092",  # an option, not a passthrough
        )
    )
    assert dict(settings.kafka) == {"socket.timeout.ms": "6000", "security.protocol": "SASL_SSL"}
    for client in ("consumer", "producer", "admin"):  # common properties reach every client
        config = settings.kafka_config(client)
        assert config["socket.timeout.ms"] == "6000"
        assert config["security.protocol"] == "SASL_SSL"
        assert config["bootstrap.servers"] == "b:9092"
        assert config["logger"].name == "ofsys.kafka"
        assert set(config) == {
            "bootstrap.servers",
            "logger",
            "socket.timeout.ms",
            "security.protocol",
        }


def test_kafka_config_overrides_win() -> None:
    settings = load(env(OFSYS_KAFKA_ENABLE_AUTO_COMMIT="true"))
    config = settings.kafka_config("consumer", **{"enable.auto.commit": False, "group.id": "g"})
    assert config["enable.auto.commit"] is False
    assert config["group.id"] == "g"


def test_shared_consumer_and_producer_properties_reach_only_their_clients() -> None:
    settings = load(
        env(
            OFSYS_KAFKA_SESSION_TIMEOUT_MS="6000",  # consumer only
            OFSYS_KAFKA_AUTO_OFFSET_RESET="earliest",  # consumer only (a topic property)
            OFSYS_KAFKA_COMPRESSION_TYPE="lz4",  # producer only
            OFSYS_KAFKA_CLIENT_RACK="eu-1a",  # common
        )
    )
    consumer = settings.kafka_config("consumer")
    producer = settings.kafka_config("producer")
    admin = settings.kafka_config("admin")
    assert consumer["session.timeout.ms"] == "6000"
    assert consumer["auto.offset.reset"] == "earliest"
    assert "compression.type" not in consumer
    assert producer["compression.type"] == "lz4"
    assert "session.timeout.ms" not in producer
    assert "auto.offset.reset" not in producer
    assert admin["client.rack"] == producer["client.rack"] == consumer["client.rack"] == "eu-1a"
    assert not {"session.timeout.ms", "auto.offset.reset", "compression.type"} & set(admin)


def test_a_client_override_reaches_that_client_only_and_wins_over_the_shared_value() -> None:
    settings = load(
        env(
            OFSYS_KAFKA_PRODUCER_BATCH_SIZE="65536",
            OFSYS_KAFKA_SOCKET_TIMEOUT_MS="6000",
            OFSYS_KAFKA_PRODUCER_SOCKET_TIMEOUT_MS="9000",
            OFSYS_KAFKA_CONSUMER_MAX_POLL_INTERVAL_MS="600000",
            OFSYS_KAFKA_ADMIN_CLIENT_ID="ops",
        )
    )
    assert dict(settings.kafka) == {"socket.timeout.ms": "6000"}
    producer = settings.kafka_config("producer")
    consumer = settings.kafka_config("consumer")
    admin = settings.kafka_config("admin")
    assert producer["batch.size"] == "65536"
    assert producer["socket.timeout.ms"] == "9000"
    assert consumer["socket.timeout.ms"] == admin["socket.timeout.ms"] == "6000"
    assert consumer["max.poll.interval.ms"] == "600000"
    assert "batch.size" not in consumer and "batch.size" not in admin
    assert admin["client.id"] == "ops"
    assert "client.id" not in producer and "client.id" not in consumer


def test_the_outputs_producer_is_built_with_a_producer_override() -> None:
    """The producer the pipeline builds (runtime/outputs.py) is given the override."""
    from confluent_kafka import Producer

    from pipeline.runtime import outputs

    seen: list[dict[str, object]] = []

    class Recording(Producer):  # type: ignore[misc]
        def __init__(self, config: dict[str, object]) -> None:
            seen.append(config)
            super().__init__(config)

    settings = load(env(OFSYS_KAFKA_PRODUCER_COMPRESSION_TYPE="zstd"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(outputs, "Producer", Recording)
        outputs.Outputs(settings)
    [config] = seen
    assert config["compression.type"] == "zstd"
    assert config["enable.idempotence"] is True  # the pipeline's own settings stay


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "OFSYS_KAFKA_PRODUCER_SESSION_TIMEOUT_MS",
            "OFSYS_KAFKA_PRODUCER_SESSION_TIMEOUT_MS: session.timeout.ms is a consumer "
            "property, not for the producer client (use OFSYS_KAFKA_CONSUMER_SESSION_TIMEOUT_MS)",
        ),
        (
            "OFSYS_KAFKA_CONSUMER_LINGER_MS",
            "OFSYS_KAFKA_CONSUMER_LINGER_MS: linger.ms is a producer property, not for the "
            "consumer client (use OFSYS_KAFKA_PRODUCER_LINGER_MS)",
        ),
        (
            "OFSYS_KAFKA_ADMIN_AUTO_OFFSET_RESET",
            "OFSYS_KAFKA_ADMIN_AUTO_OFFSET_RESET: auto.offset.reset is a consumer property, "
            "not for the admin client (use OFSYS_KAFKA_CONSUMER_AUTO_OFFSET_RESET)",
        ),
        (
            "OFSYS_KAFKA_ADMIN_ACKS",
            "OFSYS_KAFKA_ADMIN_ACKS: acks is a producer property, not for the admin client "
            "(use OFSYS_KAFKA_PRODUCER_ACKS)",
        ),
    ],
)
def test_a_property_given_to_the_wrong_client_is_one_clear_error(name: str, message: str) -> None:
    assert config_error(env(**{name: "1"})) == message


@pytest.mark.parametrize("name", ["OFSYS_KAFKA_CONSUMER_", "OFSYS_KAFKA_PRODUCER_"])
def test_a_client_prefix_without_a_property_is_unknown(name: str) -> None:
    assert config_error(env(**{name: "1"})) == f"unknown option {name}"


def test_the_scope_tables_do_not_overlap_and_name_no_client_prefix() -> None:
    from pipeline.config_kafka import CONSUMER_ONLY, PRODUCER_ONLY

    assert not CONSUMER_ONLY & PRODUCER_ONLY
    for prop in CONSUMER_ONLY | PRODUCER_ONLY:  # else OFSYS_KAFKA_<CLIENT>_ would be ambiguous
        assert not prop.startswith(("consumer.", "producer.", "admin.")), prop


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OFSYS_FLUSH_INTERVAL_MS", "0", "OFSYS_FLUSH_INTERVAL_MS must be a positive integer"),
        ("OFSYS_BATCH_MAX_COMMANDS", "-1", "OFSYS_BATCH_MAX_COMMANDS must be a positive integer"),
        ("OFSYS_SHUTDOWN_TIMEOUT_S", "0", "OFSYS_SHUTDOWN_TIMEOUT_S must be a positive number"),
        (
            "OFSYS_METRICS_PORT",
            "65536",
            "OFSYS_METRICS_PORT must be a port number from 0 to 65535",
        ),
        (
            "OFSYS_TOPIC",
            "bad topic",
            "OFSYS_TOPIC must be a Kafka topic name (letters, digits, '.', '_', '-')",
        ),
        ("OFSYS_GROUP_ID", "  ", "OFSYS_GROUP_ID must not be empty"),
        ("OFSYS_LOG_LEVEL", "verbose", "OFSYS_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR"),
        (
            "OFSYS_JOURNEY_MAX_REQUESTS_PER_S",
            "-1",
            "OFSYS_JOURNEY_MAX_REQUESTS_PER_S must be a rate per second, 0 (no limit) or more",
        ),
        (
            "OFSYS_JOURNEY_MAX_COMMANDS_PER_S",
            "nan",
            "OFSYS_JOURNEY_MAX_COMMANDS_PER_S must be a rate per second, 0 (no limit) or more",
        ),
        (
            "OFSYS_JOURNEY_MAX_COMMANDS_PER_S",
            "lots",
            "OFSYS_JOURNEY_MAX_COMMANDS_PER_S must be a rate per second, 0 (no limit) or more",
        ),
        ("OFSYS_DLQ_RETENTION_MS", "0", "OFSYS_DLQ_RETENTION_MS must be a positive integer"),
    ],
)
def test_bad_values(name: str, value: str, message: str) -> None:
    assert config_error(env(**{name: value})) == message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("OFSYS_CONSUME_BATCH", "lots", "must be a positive integer"),
        ("OFSYS_METRICS_PORT", "abc", "must be a port number from 0 to 65535"),
        ("OFSYS_MAX_CLOCK_SKEW_S", "1.5", "must be 0 or a positive integer"),
        ("OFSYS_SHUTDOWN_TIMEOUT_S", "soon", "must be a positive number"),
        ("OFSYS_JOURNEY_TIMEOUT_S", "nan", "must be a positive number"),
        ("OFSYS_BROKER_OUTAGE_S", "inf", "must be a positive number"),
    ],
)
def test_non_numeric_value_names_the_variable_and_what_it_takes(
    name: str, value: str, expected: str
) -> None:
    """Never int()'s own "invalid literal for int() with base 10: 'abc'"."""
    assert config_error(env(**{name: value})) == f"{name} {expected}"


def test_every_numeric_option_says_what_it_takes() -> None:
    for option in OPTIONS:
        if option.default is not None and isinstance(option.default, int | float):
            if isinstance(option.default, bool):
                continue
            message = config_error(env(**{option.env: "abc"}))
            assert message.startswith(f"{option.env} must be "), message
            assert "invalid literal" not in message and "could not convert" not in message


def test_dlq_topic_default_and_explicit() -> None:
    assert load(env(OFSYS_TOPIC="shop.events")).dlq_topic == "shop.events.dlq"
    assert load(env(OFSYS_DLQ_TOPIC="dlq")).dlq_topic == "dlq"


def test_secret_never_prints() -> None:
    secret = Secret(KEY)
    assert repr(secret) == "Secret('**********')"
    assert str(secret) == "Secret('**********')"
    assert f"{secret}" == "Secret('**********')"
    assert secret.reveal() == KEY
    assert secret == Secret(KEY)
    assert secret != Secret("Z" * 32)
    assert secret != KEY
    assert hash(secret) == hash(Secret(KEY))
    settings = load(env())
    assert KEY not in repr(settings)
    assert KEY not in str(settings)


def test_settings_are_frozen() -> None:
    settings = load(env())
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.topic = "other"  # type: ignore[misc]


# ----------------------------------------------------------------------------------------
# the CLI: bad configuration or usage -> one line on stderr, exit code 2

CLI = Path(sys.executable).parent / "ofsys-pipeline"


def run_cli(*args: str, **environ: str | None) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ.get("PATH", "/usr/bin"), **GOOD}
    for name, value in environ.items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    return subprocess.run(
        [str(CLI), "run", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], secret: str) -> str:
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.endswith("\n")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert secret not in result.stderr
    return result.stderr


def test_cli_exists() -> None:
    assert CLI.is_file()


def test_cli_bad_key_in_environment() -> None:
    bad = "Secret0Key0With0Dashes-000000000"  # 32 characters, one not alphanumeric
    stderr = assert_one_line_exit_2(run_cli(OFSYS_ACCOUNT_KEY=bad), bad)
    assert stderr == (
        "ofsys-pipeline: error: OFSYS_ACCOUNT_KEY must be exactly 32 letters and digits "
        "(got 32 characters)\n"
    )


def test_cli_bad_key_as_flag() -> None:
    bad = "shortSECRETkey42"
    stderr = assert_one_line_exit_2(run_cli(f"--account-key={bad}"), bad)
    assert stderr == (
        "ofsys-pipeline: error: --account-key must be exactly 32 letters and digits "
        "(got 16 characters)\n"
    )


def test_cli_unknown_flag() -> None:
    stderr = assert_one_line_exit_2(run_cli("--account-key", KEY, "--bogus-flag", "1"), KEY)
    assert stderr == "ofsys-pipeline: error: unrecognized arguments: --bogus-flag\n"


def test_cli_unknown_variable() -> None:
    stderr = assert_one_line_exit_2(run_cli(OFSYS_ACOUNT_KEY=KEY), KEY)
    assert stderr == "ofsys-pipeline: error: unknown option OFSYS_ACOUNT_KEY\n"


def test_cli_misspelt_key_flag_does_not_echo_the_key() -> None:
    assert_one_line_exit_2(run_cli("--acount-key", KEY, OFSYS_ACCOUNT_KEY=None), KEY)


def test_options_and_settings_fields_are_the_same_names() -> None:
    """OPTIONS declares each option; Settings types it: neither may drift from the other."""
    import dataclasses

    fields = {field.name for field in dataclasses.fields(Settings)} - {"kafka", "kafka_overrides"}
    assert {option.field for option in OPTIONS} == fields
