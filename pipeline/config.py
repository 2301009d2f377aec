"""Settings: one frozen value object, read from OFSYS_* environment variables and flags.

Every option is declared in `OPTIONS` (name, parser, help, default); the environment
variable, the CLI flag and the `--help` text derive from it. `Settings` types the same
names as fields; a test keeps the two in step. Flags win over the environment.
`OFSYS_KAFKA_<PROPERTY>` variables are passed to librdkafka as `<property>` (underscores
turned into dots), shared or per client (`config_kafka`). The value parsers and `Secret`
live in `config_values` (re-exported here).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from . import config_kafka, logs
from .config_kafka import KAFKA_PREFIX, KafkaClient
from .config_values import (
    KEY_RE,
    Secret,
    _account_key,
    _flag,
    _in_flight,
    _non_negative_int,
    _nonempty,
    _partitioner,
    _port,
    _positive_float,
    _positive_int,
    _rate,
    _topic,
    _url,
    check_account_key,
)
from .errors import ConfigError

__all__ = [
    "KAFKA_PREFIX",
    "KEY_RE",
    "OPTIONS",
    "Option",
    "Secret",
    "Settings",
    "add_arguments",
    "check_account_key",
    "load",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Option:
    field: str
    parse: Callable[[str], Any]
    help: str
    default: Any = None
    required: bool = False

    @property
    def env(self) -> str:
        return "OFSYS_" + self.field.upper()

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option(
        "kafka_bootstrap_servers",
        _nonempty,
        "Kafka bootstrap servers, host:port[,...]",
        default="127.0.0.1:9092",
    ),
    Option("topic", _topic, "input topic of Avro site events", required=True),
    Option("group_id", _nonempty, "consumer group id", default="ofsys-pipeline"),
    Option("journey_url", _url, "Journey ingest URL (POST)", required=True),
    Option(
        "account_key", _account_key, "Journey account key: 32 letters and digits", required=True
    ),
    Option("dlq_topic", _topic, "dead-letter topic (default: <topic>.dlq)"),
    Option(
        "schema_registry_url",
        _url,
        "Confluent schema registry; when set, values use Confluent's wire format",
    ),
    Option(
        "flush_interval_ms", _positive_int, "flush window: max time a change waits", default=1000
    ),
    Option("batch_max_commands", _positive_int, "max commands per Journey request", default=500),
    Option(
        "batch_max_bytes", _positive_int, "max body bytes per Journey request", default=1_000_000
    ),
    Option("metrics_port", _port, "port of /metrics, /healthz and /readyz (0: off)", default=9400),
    Option(
        "max_record_bytes",
        _positive_int,
        "larger record values are dead-lettered",
        default=1_000_000,
    ),
    Option("shutdown_timeout_s", _positive_float, "max drain time on SIGTERM", default=25.0),
    Option("journey_timeout_s", _positive_float, "timeout of one Journey request", default=10.0),
    Option("retry_max_backoff_s", _positive_float, "cap of the retry backoff", default=30.0),
    Option(
        "journey_max_in_flight",
        _in_flight,
        "Journey requests at once (1-64); a cart's commands stay in order",
        default=8,
    ),
    Option(
        "journey_max_requests_per_s",
        _rate,
        "the account's Journey request limit for the whole group; each member takes "
        "its partitions' share (0: no limit)",
        default=0.0,
    ),
    Option(
        "journey_max_commands_per_s",
        _rate,
        "the account's Journey command limit for the whole group, shared alike (0: no limit)",
        default=0.0,
    ),
    Option(
        "dlq_retention_ms",
        _positive_int,
        "retention.ms of the dead-letter topic when the pipeline creates it (personal data)",
        default=7 * 86_400_000,
    ),
    Option(
        "changelog",
        _flag,
        "keep partition state durable in a compacted changelog topic",
        default=True,
    ),
    Option(
        "retention_carts_s",
        _positive_int,
        "forget a cart idle this long (event time)",
        default=30 * 86400,
    ),
    Option(
        "retention_event_ids_s",
        _positive_int,
        "remember event ids this long (replays)",
        default=86400,
    ),
    Option(
        "retention_orders_s",
        _positive_int,
        "remember order ids this long (sent once)",
        default=90 * 86400,
    ),
    Option(
        "abandoned_cart_after_s",
        _positive_int,
        "a cart with lines and an email, quiet this long, fires AbandonedCart",
        default=1800,
    ),
    Option(
        "abandoned_cart_grace_s",
        _non_negative_int,
        "a quiet cart whose email arrives within this long after it fell due still fires",
        default=3600,
    ),
    Option(
        "browse_abandoned_after_s",
        _non_negative_int,
        "a visitor who viewed products and added nothing this long fires "
        "BrowseAbandonment (0: off)",
        default=3600,
    ),
    Option(
        "triggers_topic", _topic, "where triggers are also produced (default: <topic>.triggers)"
    ),
    Option(
        "partitioner",
        _partitioner,
        "how the shop's producers partition by key: murmur2 (Java) or crc32 (librdkafka)",
        default="murmur2",
    ),
    Option("consume_batch", _positive_int, "max records taken per poll", default=2000),
    Option(
        "broker_outage_s",
        _positive_float,
        "ride out a broker that cannot be reached this long, then exit",
        default=300.0,
    ),
    Option(
        "max_clock_skew_s",
        _non_negative_int,
        "events stamped further than this past wall time are dead-lettered",
        default=300,
    ),
    Option(
        "max_quantity",
        _positive_int,
        "larger line quantities are dead-lettered (invalid-value)",
        default=10_000,
    ),
    Option("log_level", lambda v: v.upper(), "DEBUG, INFO, WARNING or ERROR", default="INFO"),
)
_BY_ENV = {option.env: option for option in OPTIONS}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything `run` needs, validated. Build it with `load()`."""

    kafka_bootstrap_servers: str
    topic: str
    group_id: str
    journey_url: str
    account_key: Secret
    dlq_topic: str
    schema_registry_url: str | None
    flush_interval_ms: int
    batch_max_commands: int
    batch_max_bytes: int
    metrics_port: int
    max_record_bytes: int
    shutdown_timeout_s: float
    journey_timeout_s: float
    journey_max_in_flight: int
    retry_max_backoff_s: float
    journey_max_requests_per_s: float
    journey_max_commands_per_s: float
    dlq_retention_ms: int
    changelog: bool
    retention_carts_s: int
    retention_event_ids_s: int
    retention_orders_s: int
    abandoned_cart_after_s: int
    abandoned_cart_grace_s: int
    browse_abandoned_after_s: int
    triggers_topic: str
    partitioner: str
    consume_batch: int
    broker_outage_s: float
    max_clock_skew_s: int
    max_quantity: int
    log_level: str
    kafka: Mapping[str, str] = dataclasses.field(default_factory=dict)
    kafka_overrides: Mapping[KafkaClient, Mapping[str, str]] = dataclasses.field(
        default_factory=dict
    )

    @property
    def changelog_topic(self) -> str:
        """One compacted changelog per group and input topic, partitioned like the input."""
        return f"{self.group_id}.{self.topic}.changelog"

    @property
    def repartition_topic(self) -> str:
        """Where records not keyed by cart id are re-keyed, partitioned like the input."""
        return f"{self.group_id}.{self.topic}.repartition"

    @property
    def control_topic(self) -> str:
        """Forget requests (`ofsys-pipeline forget`), partitioned like the input."""
        return f"{self.topic}.control"

    def kafka_config(self, client: KafkaClient, **overrides: Any) -> dict[str, Any]:
        """librdkafka settings of one kind of client: bootstrap servers, the shared
        properties in its scope, its own OFSYS_KAFKA_<CLIENT>_* ones, then `overrides`
        (what the pipeline itself needs wins)."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "logger": logs.get("kafka"),
        }
        config.update(
            config_kafka.for_client(client, self.kafka, self.kafka_overrides.get(client, {}))
        )
        config.update(overrides)
        return config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare one flag per option; defaults stay None so the environment can fill in."""
    for option in OPTIONS:
        default = f" (default: {option.default})" if option.default is not None else ""
        parser.add_argument(
            option.flag,
            dest=option.field,
            metavar=option.field.upper(),
            help=f"{option.help}{default} [env: {option.env}]",
        )


def load(environ: Mapping[str, str], flags: Mapping[str, str | None] | None = None) -> Settings:
    """Validate environment and flags into Settings; raise ConfigError naming the option."""
    flags = flags or {}
    passthrough: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith("OFSYS_") or name in _BY_ENV:
            continue
        if not config_kafka.is_kafka_variable(name):
            raise ConfigError(f"unknown option {name}")
        passthrough[name] = value
    shared, overrides = config_kafka.read(passthrough)
    values: dict[str, Any] = {"kafka": shared, "kafka_overrides": overrides}
    for option in OPTIONS:
        raw = flags.get(option.field)
        source = option.flag
        if raw is None:
            raw, source = environ.get(option.env), option.env
        if raw is None:
            if option.required:
                raise ConfigError(f"{option.env} is required ({option.help})")
            values[option.field] = option.default
            continue
        try:
            values[option.field] = option.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{source} {exc}") from None
    values["dlq_topic"] = values["dlq_topic"] or f"{values['topic']}.dlq"
    values["triggers_topic"] = values["triggers_topic"] or f"{values['topic']}.triggers"
    if values["log_level"] not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("OFSYS_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
    return Settings(**values)
