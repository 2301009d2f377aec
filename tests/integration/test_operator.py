"""What an operator reads in `ofsys-pipeline run`'s log on the real broker: consumer-only
Kafka settings given to the shared prefix make no CONFWARN, every line is JSON,
assignments are logged per topic, the shutdown ends on "drained and committed" without
an "idle" line, and a fatal exit is a JSON line too."""

from __future__ import annotations

import orjson
from confluent_kafka.admin import AdminClient

from pipeline.runtime import topics
from pipeline.tools.producing import client_config

from .checks import shop_records
from .conftest import Harness, PipelineProcess


def _entries(log: str) -> list[dict[str, object]]:
    """Every line of the log as JSON (raising on one that is not)."""
    return [orjson.loads(line) for line in log.splitlines() if line.strip()]


def test_the_run_log_reads_right(harness: Harness) -> None:
    records = shop_records(harness.family, 200, seed=13)
    harness.produce(records)
    # the harness already gives session.timeout.ms and heartbeat.interval.ms (consumer
    # only) to the shared prefix; more of both kinds, and a producer override
    pipeline = harness.start(
        OFSYS_KAFKA_AUTO_OFFSET_RESET="earliest",
        OFSYS_KAFKA_MAX_POLL_INTERVAL_MS="300000",
        OFSYS_KAFKA_BATCH_NUM_MESSAGES="5000",
        OFSYS_KAFKA_PRODUCER_STICKY_PARTITIONING_LINGER_MS="20",
    )
    harness.wait_committed(len(records), 60)
    assert pipeline.terminate() == 0
    log = pipeline.log()
    entries = _entries(log)
    assert "CONFWARN" not in log
    assert all("ts" in entry and "level" in entry for entry in entries)
    assigned = {
        entry["topic"]: entry["partitions"]
        for entry in entries
        if entry["message"] == "partitions assigned"
    }
    repartition = f"{harness.group}.{harness.topic}.repartition"
    control = f"{harness.topic}.control"
    assert assigned == {
        harness.topic: [0, 1, 2, 3],
        repartition: [0, 1, 2, 3],
        control: [0, 1, 2, 3],
    }
    messages = [entry["message"] for entry in entries]
    drained = messages.index("drained and committed; exiting")
    assert not [m for m in messages[drained:] if str(m).startswith("no partitions assigned")]


def test_a_fatal_exit_is_one_json_line(harness: Harness) -> None:
    """A changelog topic that cannot take the state's records stops the pipeline at
    start (exit 1): the reason is the last line, JSON like the rest."""
    topic = harness.new_topic("fatal", 4)
    changelog = f"g-{topic}.{topic}.changelog"  # the group's, created too small
    topics.ensure(
        AdminClient(client_config(harness.broker.bootstrap)),
        changelog,
        4,
        {"max.message.bytes": "2000", "cleanup.policy": "compact"},
    )
    process = PipelineProcess({"OFSYS_METRICS_PORT": "0", **harness.env(topic)})
    harness.started.append(process)
    assert process.process.wait(60) == 1
    entries = _entries(process.log())
    last = entries[-1]
    assert last["level"] == "critical"
    assert str(last["message"]).startswith(f"exiting: changelog topic {changelog} takes")
