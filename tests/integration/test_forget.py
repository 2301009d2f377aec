"""Forgetting a shopper (GDPR erasure) end to end: `ofsys-pipeline forget` against Tansu,
the Journey emulator and `ofsys-pipeline run`."""

from __future__ import annotations

import subprocess
import sys
import time

import orjson
from confluent_kafka.admin import AdminClient, ConfigResource

from pipeline import config
from pipeline.runtime import topics
from pipeline.runtime.changelog import Changelog
from pipeline.runtime.outputs import Outputs
from pipeline.source.identity import email_hash
from pipeline.source.partitioner import PARTITIONERS

from .conftest import Harness, wait_for
from .test_triggers import KETTLE, MUG, ev, triggers

AFTER_S = 8  # the abandoned-cart delay: long enough to forget before it falls due
ANNA, BORIS = "anna.forget@example.ru", "boris.stays@example.ru"


def same_partition_carts(partitions: int) -> tuple[str, str, int]:
    """Two cart ids the producers' partitioner (murmur2) puts on one partition."""
    partition_of = PARTITIONERS["murmur2"]
    first = "cart-anna"
    target = partition_of(first.encode(), partitions)
    other = next(
        f"cart-boris-{n}"
        for n in range(1000)
        if partition_of(f"cart-boris-{n}".encode(), partitions) == target
    )
    return first, other, target


def forget(harness: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "forget", *args],
        env={"PATH": "/usr/bin:/bin", "OFSYS_KAFKA_BOOTSTRAP_SERVERS": harness.broker.bootstrap},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_forget_erases_the_shopper_and_spares_the_partition_neighbour(harness: Harness) -> None:
    anna_cart, boris_cart, partition = same_partition_carts(4)
    pipeline = harness.start(OFSYS_ABANDONED_CART_AFTER_S=str(AFTER_S))
    harness.send(
        ev("Added Product", anna_cart, ANNA, product=KETTLE, quantity=2),
        ev("Viewed Product Detail", anna_cart, product=MUG),
        ev("Added Product", boris_cart, BORIS, product=MUG),
    )
    harness.wait_committed(3, 30, "both shoppers' events committed")
    armed_at = time.monotonic()

    done = forget(harness, "--email", f"  {ANNA.upper()} ", "--topic", harness.topic)
    assert done.returncode == 0, done.stderr
    written = orjson.loads(done.stdout)
    assert written == {
        "forget": "email",
        "subject_sha256": email_hash(ANNA)[:16],
        "topic": f"{harness.topic}.control",
        "partitions": [0, 1, 2, 3],  # an address: every partition may hold its carts
    }
    admin = AdminClient({"bootstrap.servers": harness.broker.bootstrap})
    assert topics.partitions(admin, f"{harness.topic}.control") == 4
    wait_for(
        lambda: pipeline.sample("ofsys_erasures_total", kind="email") == 4,
        20,
        "the request applied on every partition",
    )
    assert time.monotonic() - armed_at < AFTER_S, "forgotten only after the timer fell due"

    # Boris's timer, armed with hers on the same partition, still fires; hers never does
    wait_for(lambda: boris_cart in triggers(harness), 30, "the neighbour's abandoned cart")
    time.sleep(2)
    assert set(triggers(harness)) == {boris_cart}
    log = pipeline.log()
    assert "shopper forgotten" in log and email_hash(ANNA)[:16] in log
    assert ANNA not in log and anna_cart not in log  # logged by hash only
    assert pipeline.terminate() == 0

    settings = config.load({**harness.env(), "OFSYS_METRICS_PORT": "0"})
    states, _ = Changelog(settings, Outputs(settings)).restore([partition], lambda: False)
    snapshot = states[partition].snapshot()
    snapshot.pop("seen")  # event ids stay (replays of her events are kept out by them)
    restored = orjson.dumps(snapshot).decode()
    assert ANNA not in restored
    assert anna_cart not in restored
    assert boris_cart in restored and BORIS in restored

    # a cart forgotten by id: one request, on the cart's partition
    done = forget(harness, "--cart", boris_cart, "--topic", harness.topic)
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["partitions"] == [partition]


def test_forget_refuses_bad_input_in_one_line(harness: Harness) -> None:
    for args, message in [
        (["--email", "not-an-address", "--topic", harness.topic], "--email is not an e-mail"),
        (["--cart", "", "--topic", harness.topic], "--cart must be a cart id"),
        (["--cart", "c-1", "--topic", "no-such-topic-here"], "does not exist"),
        (["--cart", "c-1"], "--topic or OFSYS_TOPIC is required"),
    ]:
        done = forget(harness, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
        assert "not-an-address" not in done.stderr


def test_the_dead_letter_topic_keeps_personal_data_seven_days(harness: Harness) -> None:
    pipeline = harness.start()
    admin = AdminClient({"bootstrap.servers": harness.broker.bootstrap})
    wait_for(lambda: topics.partitions(admin, f"{harness.topic}.dlq"), 20, "the DLQ topic")
    resource = ConfigResource(ConfigResource.Type.TOPIC, f"{harness.topic}.dlq")
    entry = admin.describe_configs([resource])[resource].result(10)["retention.ms"]
    assert entry.value == str(7 * 86_400_000)
    assert pipeline.terminate() == 0
