"""Integration fixtures: a real Tansu broker (session), a real Journey emulator (per
test), and the pipeline as a real `ofsys-pipeline run` process.

Tests take one fixture, `harness` (a `Harness`: the broker, a Journey emulator, a fresh
topic, the event schema family, and the pipelines it starts, killed at teardown). The
fixtures it is made of (`broker`, `journey`, `topic`, `family`, `start_pipeline`) stay
usable on their own."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from pipeline.runtime import topics
from pipeline.source.schemas import SchemaFamily, load_family
from pipeline.tools.broker import EmbeddedBroker, free_port
from pipeline.tools.emulator import JourneyEmulator

from .checks import assert_nothing_lost_or_doubled, committed, wait_committed

KEY = "TestKey0123456789abcdefABCDEF012"
_names = itertools.count()


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as started:
        yield started
        # Its storage is in memory: killed at once, as with clients still connected (the
        # cached admin client of checks.admin_for) a SIGTERM leaves Tansu waiting out
        # EmbeddedBroker.stop's 5 s.
        if started._process is not None and started._process.poll() is None:
            started._process.kill()
            started._process.wait(10)


@pytest.fixture(scope="session")
def family() -> SchemaFamily:
    return load_family("site_event")


@pytest.fixture
def journey() -> Iterator[JourneyEmulator]:
    """A Journey emulator; at teardown, asserts no command id arrived with two contents."""
    with JourneyEmulator(account_key=KEY) as emulator:
        yield emulator
    ledger = emulator.ledger()
    examples = orjson.dumps(ledger["conflict_examples"], option=orjson.OPT_INDENT_2).decode()
    assert ledger["conflicts"] == 0, (
        f"{ledger['conflicts']} commands reused an id with different content "
        f"(Journey keeps the first copy); examples {{id, first, then}}:\n{examples}"
    )


@pytest.fixture
def topic(broker: EmbeddedBroker, request: pytest.FixtureRequest) -> str:
    """A fresh 4-partition input topic for this test."""
    name = f"t{next(_names)}-{request.node.name[:40]}".replace("[", "-").replace("]", "")
    name = "".join(c if c.isalnum() or c in "-._" else "-" for c in name)
    topics.ensure(AdminClient({"bootstrap.servers": broker.bootstrap}), name, 4)
    return name


def produce(broker: EmbeddedBroker, topic: str, records: list[tuple[str | None, bytes]]) -> None:
    """One record per produce request batch, so Tansu's watermarks are exact; keys
    partitioned with murmur2, like Java producers and the pipeline's default."""
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "linger.ms": 0,
            "batch.num.messages": 1,
            "partitioner": "murmur2_random",
        }
    )
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def read_all(
    broker: EmbeddedBroker, topic: str, expected: int, timeout_s: float = 30.0
) -> list[Message]:
    """Every record of `topic` (all partitions), waiting for at least `expected`
    (with expected 0: whatever arrives within `timeout_s`)."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    count = topics.partitions(admin, topic) or 1
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "test-reader",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(count)])
    found: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for msg in consumer.consume(500, 0.5):
            if msg.error() is None:
                found.append(msg)
        if len(found) >= expected > 0:
            # one more short poll to catch anything beyond the expected count
            found.extend(m for m in consumer.consume(500, 0.5) if m.error() is None)
            break
    consumer.close()
    return found


def wait_for(condition: Callable[[], Any], timeout_s: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what or condition}")


class PipelineProcess:
    """`ofsys-pipeline run` as a child process, configured by environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.metrics_port = int(env["OFSYS_METRICS_PORT"])
        self.stderr_path = f"/tmp/ofsys-pipeline-test-{os.getpid()}-{next(_names)}.log"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run"],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
            return text

    def sample(self, metric: str, /, **labels: str) -> float:
        """The value of one sample, 0 when absent."""
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == metric and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    def ready(self) -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())

    def wait_serving(self, timeout_s: float = 30.0) -> None:
        def serving() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"pipeline exited {self.process.returncode}: {self.log()}")
            try:
                self.metrics()
                return True
            except OSError:
                return False

        wait_for(serving, timeout_s, "the metrics endpoint")

    def terminate(self, timeout_s: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        self._stderr.close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._stderr.close()

    def log(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        with open(self.stderr_path, "rb") as log:
            return log.read().decode(errors="replace")


def pipeline_env(
    broker: EmbeddedBroker, journey: JourneyEmulator, topic: str, **overrides: str
) -> dict[str, str]:
    """What the tests run `ofsys-pipeline run` with: short windows, a fast group join."""
    return {
        "OFSYS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "OFSYS_TOPIC": topic,
        "OFSYS_GROUP_ID": f"g-{topic}",
        "OFSYS_JOURNEY_URL": journey.url,
        "OFSYS_ACCOUNT_KEY": KEY,
        "OFSYS_FLUSH_INTERVAL_MS": "200",
        "OFSYS_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "OFSYS_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "OFSYS_RETRY_MAX_BACKOFF_S": "1",
        "OFSYS_SHUTDOWN_TIMEOUT_S": "15",
        **overrides,
    }


def start_process(env: dict[str, str], started: list[PipelineProcess]) -> PipelineProcess:
    """A pipeline on its own metrics port, serving; remembered in `started` for cleanup."""
    process = PipelineProcess({"OFSYS_METRICS_PORT": str(free_port()), **env})
    started.append(process)
    process.wait_serving()
    return process


@pytest.fixture
def start_pipeline(
    broker: EmbeddedBroker, journey: JourneyEmulator, topic: str
) -> Iterator[Callable[..., PipelineProcess]]:
    started: list[PipelineProcess] = []

    def start(**overrides: str) -> PipelineProcess:
        return start_process(pipeline_env(broker, journey, topic, **overrides), started)

    yield start
    for process in started:
        process.kill()


class Harness:
    """One integration test's world: the session's broker, this test's Journey emulator
    and fresh 4-partition topic, the site_event family, and every pipeline started
    through it (killed at teardown)."""

    def __init__(
        self,
        broker: EmbeddedBroker,
        journey: JourneyEmulator,
        topic: str,
        family: SchemaFamily,
    ) -> None:
        self.broker = broker
        self.journey = journey
        self.topic = topic
        self.family = family
        self.group = f"g-{topic}"  # the pipeline's group (`env`: g-<topic>)
        self.started: list[PipelineProcess] = []

    # -- the pipeline ---------------------------------------------------------------------

    def env(self, topic: str | None = None, **overrides: str) -> dict[str, str]:
        """`pipeline_env` for this test's topic (or `topic`)."""
        return pipeline_env(self.broker, self.journey, topic or self.topic, **overrides)

    def start(self, topic: str | None = None, **overrides: str) -> PipelineProcess:
        """`ofsys-pipeline run` on its own metrics port, serving; `overrides` are
        environment variables (OFSYS_...)."""
        return self.spawn(self.env(topic, **overrides))

    def spawn(self, env: dict[str, str]) -> PipelineProcess:
        """A pipeline with exactly `env` (e.g. another member of a group), serving."""
        return start_process(env, self.started)

    def restart(self, process: PipelineProcess) -> PipelineProcess:
        """The same pipeline again (same environment and metrics port), serving; the
        caller has stopped or killed `process`."""
        again = PipelineProcess(process.env)
        self.started.append(again)
        again.wait_serving()
        return again

    def close(self) -> None:
        for process in self.started:
            process.kill()

    # -- the broker -----------------------------------------------------------------------

    def new_topic(self, prefix: str, partitions: int, config: dict[str, str] | None = None) -> str:
        """Another fresh topic, for tests that need other partition counts or settings."""
        name = f"{prefix}-{time.monotonic_ns()}"
        topics.ensure(
            AdminClient({"bootstrap.servers": self.broker.bootstrap}), name, partitions, config
        )
        return name

    def produce(self, records: list[tuple[str | None, bytes]], topic: str | None = None) -> None:
        """`produce`: one record per batch, so Tansu's watermarks are exact."""
        produce(self.broker, topic or self.topic, records)

    def send(self, *events: dict[str, Any]) -> None:
        """Events, encoded single-object, keyed by their cart id."""
        self.produce([(e["cart"]["id"], self.family.encode_single_object(e)) for e in events])

    def read(self, topic: str, expected: int, timeout_s: float = 30.0) -> list[Message]:
        """`read_all` of `topic`."""
        return read_all(self.broker, topic, expected, timeout_s)

    def dlq(self, expected: int, timeout_s: float = 30.0) -> list[Message]:
        """The dead letters of this test's topic (see `read_all` for `expected`)."""
        return self.read(f"{self.topic}.dlq", expected, timeout_s)

    def committed(self, topic: str | None = None, group: str | None = None) -> dict[int, int]:
        """The group's committed offsets on this test's topic (or `topic`); the group by
        default the one `env` gives for that topic."""
        topic = topic or self.topic
        return committed(self.broker, group or f"g-{topic}", topic)

    def wait_committed(
        self,
        count: int,
        timeout_s: float = 90.0,
        what: str = "every record committed",
        topic: str | None = None,
        group: str | None = None,
    ) -> None:
        """Wait until the committed offsets (as `committed`) add up to `count` records."""
        topic = topic or self.topic
        wait_committed(self.broker, group or f"g-{topic}", topic, count, timeout_s, what)

    # -- Journey --------------------------------------------------------------------------

    def commands(self) -> list[dict[str, Any]]:
        """Every command Journey kept, in order."""
        commands: list[dict[str, Any]] = self.journey.ledger()["commands"]
        return commands

    def ledger(self) -> list[tuple[str, str, dict[str, Any]]]:
        """The kept commands as (id, call, args)."""
        return [(c["id"], c["call"], c["args"]) for c in self.commands()]

    def wait_commands(self, count: int, timeout_s: float = 60.0, what: str = "") -> None:
        """Wait until Journey holds at least `count` commands."""
        wait_for(lambda: len(self.commands()) >= count, timeout_s, what or f"{count} commands")

    def assert_ledger_matches(self, records: list[tuple[str, bytes]]) -> None:
        """`assert_nothing_lost_or_doubled`: Journey holds what one uninterrupted run over
        `records` gives, and no logical command twice."""
        assert_nothing_lost_or_doubled(self.journey, self.family, records)


@pytest.fixture
def harness(
    broker: EmbeddedBroker, journey: JourneyEmulator, topic: str, family: SchemaFamily
) -> Iterator[Harness]:
    """The one fixture the integration tests take; the journey fixture's teardown still
    asserts that no command id arrived with two contents."""
    world = Harness(broker, journey, topic, family)
    yield world
    world.close()
