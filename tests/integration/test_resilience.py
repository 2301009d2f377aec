"""Correct when it matters: a backlog caught up through kill -9, poison records, a
stalled broker, a far-future timestamp, and a price-only change, on a real broker with
the real Journey emulator and `ofsys-pipeline run` as a child process."""

from __future__ import annotations

import hashlib
import math
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from pipeline.runtime import topics
from pipeline.source.partitioner import PARTITIONERS
from pipeline.source.schemas import SchemaFamily
from pipeline.tools.broker import EmbeddedBroker
from pipeline.tools.emulator import JourneyEmulator
from pipeline.tools.producing import produce_all
from pipeline.tools.traffic import Encoder, ShopTraffic

from .checks import assert_nothing_lost_or_doubled, journey_view
from .conftest import Harness, PipelineProcess, pipeline_env, start_process, wait_for

MIB = 1024 * 1024
RSS_LIMIT = 512 * MIB  # the Helm chart's memory limit
RSS_REPORT = "/tmp/ofsys-backlog-rss.txt"
ABANDONED_AFTER_S = 3
PRICE = 100.0
WIDGET: dict[str, Any] = {"id": "sku-1", "name": "Widget", "unitSalePrice": PRICE}

# -- helpers ------------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def event_id() -> str:
    return str(uuid.uuid4())


def added(cart_id: str, email: str | None = None, **fields: Any) -> dict[str, Any]:
    """An Added Product of one Widget to cart `cart_id`, stamped now; `fields` override."""
    event: dict[str, Any] = {
        "id": event_id(),
        "name": "Added Product",
        "timestamp": now_ms(),
        "cart": {"id": cart_id},
        "product": dict(WIDGET),
        "quantity": 1,
    }
    if email is not None:
        event["user"] = {"email": email}
    event.update(fields)
    return event


def batch_produce(
    bootstrap: str,
    topic: str,
    records: list[tuple[str | None, bytes | None]],
    **config: Any,
) -> dict[int, int]:
    """Produce `records` in order, batched (fast), partitioned with murmur2 like the
    shop's producers; returns each partition's end offset, from the delivery reports
    (never compared with Tansu's watermarks: see tests/README.md)."""
    ends = produce_all(bootstrap, topic, records, timeout_s=60, **config)
    assert sum(ends.values()) == len(records), (ends, len(records))
    return ends


def shop_traffic(
    family: SchemaFamily, count: int, seed: int, visitors: int, duplicate_rate: float
) -> list[tuple[str | None, bytes | None]]:
    encode = Encoder(family)
    traffic = iter(ShopTraffic(seed=seed, visitors=visitors, duplicate_rate=duplicate_rate))
    out: list[tuple[str | None, bytes | None]] = []
    while len(out) < count:
        key, event, _ = next(traffic)
        assert event is not None
        out.append((key, encode(event)))
    return out


def committed_now(admin: AdminClient, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets, through one reused admin client (cheap to poll)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(partitions)]
    )
    try:
        result = admin.list_consumer_group_offsets([request])[group].result(10)
    except Exception:  # the broker may be busy; the caller polls again
        return {}
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def alive(process: PipelineProcess) -> None:
    """Raise, with the log's tail, if the pipeline exited by itself."""
    code = process.process.poll()
    if code is not None:
        raise AssertionError(
            f"the pipeline (pid {process.process.pid}) exited by itself with {code}; "
            f"log tail:\n{process.log()[-4000:]}"
        )


def wait_alive(
    process: PipelineProcess, condition: Callable[[], Any], timeout_s: float, what: str
) -> Any:
    """wait_for, failing at once (with the log) if the pipeline exits meanwhile."""

    def check() -> Any:
        alive(process)
        return condition()

    return wait_for(check, timeout_s, what)


def wait_committed_to(
    broker: EmbeddedBroker,
    process: PipelineProcess,
    group: str,
    topic: str,
    ends: dict[int, int],
    timeout_s: float,
) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    count = topics.partitions(admin, topic) or 1
    want = {p: o for p, o in ends.items() if o > 0}
    last: list[dict[int, int]] = [{}]

    def done() -> bool:
        last[0] = committed_now(admin, group, topic, count)
        return last[0] == want

    try:
        wait_alive(process, done, timeout_s, "the committed offsets to reach every end")
    except AssertionError as exc:
        if process.process.poll() is not None:
            raise
        raise AssertionError(
            f"{exc}; committed {last[0]}, ends {want}; log tail:\n{process.log()[-3000:]}"
        ) from None


def read_to_ends(
    broker: EmbeddedBroker, topic: str, ends: dict[int, int], timeout_s: float = 30.0
) -> list[tuple[str | None, bytes | None]]:
    """Every record of `topic` up to `ends`, partition by partition, in offset order."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "test-reader-to-ends",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    found: dict[int, list[Message]] = {p: [] for p in ends}
    deadline = time.monotonic() + timeout_s
    try:
        while any(len(found[p]) < ends[p] for p in ends):
            assert time.monotonic() < deadline, f"read {[len(m) for m in found.values()]}/{ends}"
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is None:
                    found[msg.partition()].append(msg)  # type: ignore[index]
    finally:
        consumer.close()
    out: list[tuple[str | None, bytes | None]] = []
    for messages in found.values():
        for msg in sorted(messages, key=lambda m: m.offset()):  # type: ignore[arg-type,return-value]
            key = msg.key()
            out.append((key.decode() if key is not None else None, msg.value()))
    return out


def good_only(records: list[tuple[str | None, bytes | None]]) -> list[tuple[str, bytes]]:
    return [(k or "", v) for k, v in records if v is not None]


class RssSampler:
    """Peak resident memory of the pipeline processes: VmRSS and VmHWM of each watched
    pid every 0.2 s from a thread, and VmHWM on demand (just before a kill)."""

    def __init__(self) -> None:
        self.peak_bytes = 0
        self.per_pid: dict[int, int] = {}
        self._pids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def watch(self, pid: int) -> None:
        self._pids.append(pid)

    def sample(self, pid: int) -> None:
        try:
            with open(f"/proc/{pid}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:  # the process is gone
            return
        for name in ("VmRSS", "VmHWM"):
            if name in fields and fields[name].split()[0].isdigit():
                kib = int(fields[name].split()[0])
                self.per_pid[pid] = max(self.per_pid.get(pid, 0), kib * 1024)
                self.peak_bytes = max(self.peak_bytes, kib * 1024)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for pid in list(self._pids):
                self.sample(pid)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def headers_of(msg: Message) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in msg.headers() or []:
        out[key] = value.encode() if isinstance(value, str) else (value or b"")
    return out


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


# -- 1. a backlog caught up through three kill -9 ----------------------------------------------

BACKLOG = 200_000
KILL_AT = (0.15, 0.40, 0.65)


def test_backlog_caught_up_through_three_kill9(harness: Harness) -> None:
    broker, topic, group = harness.broker, harness.topic, harness.group
    started = time.monotonic()
    records = shop_traffic(harness.family, BACKLOG, seed=101, visitors=50_000, duplicate_rate=0.02)
    ends = batch_produce(broker.bootstrap, topic, records)  # all before the pipeline starts
    produced_s = time.monotonic() - started
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    rss = RssSampler()
    processes: list[PipelineProcess] = []
    kills: list[str] = []

    def progress() -> int:
        return sum(committed_now(admin, group, topic, 4).values())

    def start() -> PipelineProcess:
        process = harness.start(OFSYS_FLUSH_INTERVAL_MS="1000")
        rss.watch(process.process.pid)
        processes.append(process)
        return process

    try:
        current = start()
        for fraction in KILL_AT:
            floor = progress() + 1  # the new process commits something before it dies
            target = max(int(fraction * BACKLOG), floor)

            def passed(target: int = target) -> int:
                done = progress()
                return done if done >= target else 0

            reached = wait_alive(current, passed, 90, f"{fraction:.0%} of the backlog committed")
            rss.sample(current.process.pid)  # VmHWM just before the kill
            alive(current)
            current.kill()
            kills.append(f"{reached / BACKLOG:.0%}")
            current = start()
        wait_committed_to(broker, current, group, topic, ends, 150)
        caught_up_s = time.monotonic() - started
        rss.sample(current.process.pid)
    finally:
        rss.stop()
    peak_mib = rss.peak_bytes / MIB
    per_pid = ", ".join(f"{pid}: {b / MIB:.0f}" for pid, b in rss.per_pid.items())
    report = (
        f"backlog of {BACKLOG} events: generated and produced in {produced_s:.1f} s, all "
        f"committed {caught_up_s:.1f} s after the test began, through kill -9 at "
        f"{', '.join(kills)} of the backlog committed; "
        f"peak RSS {peak_mib:.0f} MiB (limit {RSS_LIMIT // MIB} MiB; per pid MiB: {per_pid})"
    )
    print(report)
    with open(RSS_REPORT, "w") as out:
        out.write(report + "\n")

    harness.assert_ledger_matches(good_only(records))
    assert harness.journey.ledger()["conflicts"] == 0
    for process in processes:
        log = process.log()
        assert "MSG_SIZE_TOO_LARGE" not in log and "Message size too large" not in log, (
            f"pid {process.process.pid} logged a record too large for the broker"
        )
    assert rss.peak_bytes < RSS_LIMIT, report
    alive(current)
    assert current.terminate() == 0


# -- 2. poison records --------------------------------------------------------------------------

TWO_MB = 2 * 1024 * 1024
HUNDRED_KB = 100 * 1024


def poisons(family: SchemaFamily, rng: random.Random) -> list[tuple[str, bytes | None, str, str]]:
    """Records the pipeline must dead-letter: (key, value, reason, a word the error names).
    Each has its own key (and cart id, for events), so its dead letter can be found."""
    encode = family.encode_single_object
    body = encode(added("poison-body"))[10:]

    def bad_event(name: str, **fields: Any) -> tuple[str, bytes]:
        key = fields.get("cart", {}).get("id", f"poison-{name}")
        return key, encode(added(key, f"{name}@example.ru", **fields))

    def product(**fields: Any) -> dict[str, Any]:
        return {**WIDGET, **fields}

    out: list[tuple[str, bytes | None, str, str]] = []
    big = encode(added("poison-2mb", product=product(name="x" * TWO_MB)))
    out.append(("poison-2mb", big, "too-large", ""))
    out.append(("poison-empty", b"", "empty", ""))
    out.append(("poison-null", None, "empty", ""))
    out.append(("poison-random", b"\x17" + rng.randbytes(300), "bad-framing", ""))
    out.append(("poison-confluent", b"\x00" + (7).to_bytes(4, "big") + body, "bad-framing", ""))
    truncated = encode(added("poison-truncated", "t@example.ru"))
    out.append(("poison-truncated", truncated[: len(truncated) // 2], "undecodable", ""))
    unknown = b"\xc3\x01" + rng.randbytes(8) + body
    out.append(("poison-fingerprint", unknown, "unknown-schema", ""))
    invalid: list[tuple[str, dict[str, Any], str]] = [
        ("price-nan", {"product": product(unitSalePrice=math.nan)}, "price"),
        ("price-inf", {"product": product(unitSalePrice=math.inf)}, "price"),
        ("price-minus-inf", {"product": product(unitSalePrice=-math.inf)}, "price"),
        ("price-negative", {"product": product(unitSalePrice=-5.0)}, "price"),
        ("quantity-0", {"quantity": 0}, "quantity"),
        ("quantity-minus-1", {"quantity": -1}, "quantity"),
        ("quantity-int-max", {"quantity": 2**31 - 1}, "quantity"),
        ("quantity-10001", {"quantity": 10_001}, "quantity"),
        ("cart-id-100kb", {"cart": {"id": "c" * HUNDRED_KB}}, "cart.id"),
        ("timestamp-far-future", {"timestamp": 10**15}, "timestamp"),
        # 1970: older than any retention horizon (event ids are kept 24 h, carts 30 d),
        # so its replay could not be recognised and its cart would expire at once
        ("timestamp-zero", {"timestamp": 0}, "timestamp"),
    ]
    for name, fields, field in invalid:
        key, value = bad_event(name, **fields)
        out.append((key, value, "invalid-value", field))
    return out


def bad_email(email: str) -> bool:
    """What no e-mail Journey receives may look like."""
    return "<" in email or "\x00" in email or ".." in email or len(email) > 254 or "@" not in email


def harmless(family: SchemaFamily) -> list[tuple[str, bytes]]:
    """Events with a bad part that is dropped, not dead-lettered: the event goes through
    without the bad e-mail or the 100 KB product name."""
    encode = family.encode_single_object
    emails = {
        "mail-script": "<script>@x.ru",
        "mail-dots": "a@b..ru",
        "mail-nul": "\x00@x.ru",
        "mail-100kb": "a" * HUNDRED_KB + "@x.ru",
    }
    out = [(cart, encode(added(cart, email))) for cart, email in emails.items()]
    long_name = added("name-100kb", "n@example.ru", product={**WIDGET, "name": "n" * HUNDRED_KB})
    out.append(("name-100kb", encode(long_name)))
    return out


def test_poison_records_never_stop_the_pipeline(harness: Harness) -> None:
    # A topic of its own that takes 4 MB records, as the shop's would have to for a 2 MB
    # record to exist (Tansu enforces no size limit; Kafka does, by this setting).
    topic = harness.new_topic("poison", 4, {"max.message.bytes": "4194304"})
    broker, journey, family = harness.broker, harness.journey, harness.family
    rng = random.Random(2024)
    good = shop_traffic(family, 1500, seed=202, visitors=150, duplicate_rate=0.02)
    bad = poisons(family, rng)
    soft = harmless(family)
    stream: list[tuple[str | None, bytes | None]] = list(good)
    for key, value in [*[(k, v) for k, v, _, _ in bad], *soft]:
        stream.insert(rng.randrange(len(stream) + 1), (key, value))
    ends = batch_produce(broker.bootstrap, topic, stream, **{"message.max.bytes": 8 * MIB})
    env = harness.env(topic)
    pipeline = harness.spawn(env)
    pid = pipeline.process.pid

    wait_committed_to(broker, pipeline, env["OFSYS_GROUP_ID"], topic, ends, 90)
    alive(pipeline)
    assert pipeline.process.pid == pid

    dead = harness.read(f"{topic}.dlq", len(bad), timeout_s=20)
    by_key = {(m.key() or b"").decode(): m for m in dead}
    expected_keys = {key for key, _, _, _ in bad}
    missing = sorted(k[:40] for k in expected_keys - by_key.keys())
    assert not missing, f"bad records not dead-lettered: {missing}"
    unexpected = sorted(k[:40] for k in by_key.keys() - expected_keys)
    assert not unexpected, f"records dead-lettered that should not be: {unexpected}"
    wrong = []
    for key, _, reason, field in bad:
        msg = by_key[key]
        headers = headers_of(msg)
        got = headers.get("ofsys.reason", b"").decode()
        error = headers.get("ofsys.error", b"").decode(errors="replace")
        if got != reason or field.lower() not in error.lower():
            wrong.append(f"{key[:40]}: reason {got!r} error {error[:120]!r}, want {reason}/{field}")
    assert not wrong, "dead letters with the wrong reason:\n" + "\n".join(wrong)
    for key, value, reason, _ in bad:
        msg = by_key[key]
        headers = headers_of(msg)
        if reason == "too-large":
            assert value is not None
            assert not msg.value(), "a dead letter too large for the DLQ was sent with its value"
            assert headers.get("ofsys.value.dropped") == b"too-large"
            assert headers.get("ofsys.value.size") == str(len(value)).encode()
            assert headers.get("ofsys.value.sha256") == hashlib.sha256(value).hexdigest().encode()
        else:
            assert (msg.value() or b"") == (value or b""), f"{key[:40]}: the value was altered"

    harness.assert_ledger_matches([*good_only(good), *soft])
    commands = journey.ledger()["commands"]
    soft_carts = {cart for cart, _ in soft}
    assert soft_carts <= {c["cartId"] for c in commands if c["call"] == "ECommerce.AddCart"}
    offenders = []
    for command in commands:
        for email in (command.get("email"), command["args"].get("f_EMail")):
            if isinstance(email, str) and bad_email(email):
                offenders.append(f"{command['id']} {command['call']}: e-mail {email[:60]!r}")
        longest = max((len(s) for s in strings(command)), default=0)
        if longest > 1000:
            offenders.append(f"{command['id']} {command['call']}: a {longest}-character string")
    assert not offenders, (
        f"{len(offenders)} commands carry what should have been dropped, e.g.:\n"
        + "\n".join(offenders[:10])
    )
    assert journey.ledger()["conflicts"] == 0
    alive(pipeline)  # the same process from start to end


# -- 3. a broker that stalls for a minute ------------------------------------------------------


class SteadyShop:
    """Produces ShopTraffic at `rate` events/s from a thread until stopped. Its produce
    calls only queue while the broker is stalled (message.timeout.ms covers the stall);
    delivery reports give what reached the topic."""

    def __init__(self, bootstrap: str, topic: str, family: SchemaFamily, rate: float) -> None:
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": 5,
                "partitioner": "murmur2_random",
                "message.timeout.ms": 180_000,
                # a stalled request is retried; one in flight keeps each cart's order
                "max.in.flight.requests.per.connection": 1,
            }
        )
        self._topic = topic
        self._encode = Encoder(family)
        self._traffic = iter(ShopTraffic(seed=303, visitors=400, duplicate_rate=0.02))
        self._rate = rate
        self._stop = threading.Event()
        self.produced = 0
        self.ends: dict[int, int] = {}
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="steady-shop", daemon=True)
        self._thread.start()

    def _delivered(self, err: Any, msg: Message) -> None:
        if err is not None:
            self.errors.append(str(err))
            return
        partition: int = msg.partition()  # type: ignore[assignment]
        offset: int = msg.offset()  # type: ignore[assignment]
        self.ends[partition] = max(self.ends.get(partition, 0), offset + 1)

    def _run(self) -> None:
        try:
            began = time.monotonic()
            while not self._stop.is_set():
                due = int((time.monotonic() - began) * self._rate)
                while self.produced < due:
                    key, event, _ = next(self._traffic)
                    assert event is not None
                    self._producer.produce(
                        self._topic, key=key, value=self._encode(event), on_delivery=self._delivered
                    )
                    self.produced += 1
                self._producer.poll(0.02)
            left = self._producer.flush(150)
            if left:
                self.errors.append(f"{left} records undelivered after the stall")
        except Exception as exc:  # reported by stop(); a raising thread fails the session
            self.errors.append(repr(exc))

    def halt(self) -> None:
        """Stop producing (what is queued is still delivered); for cleanup."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(180)
        assert not self._thread.is_alive(), "the producer did not finish"
        assert not self.errors, f"the test producer failed: {self.errors[:3]}"


STALL_S = 60


def gauges(process: PipelineProcess) -> str:
    """The pipeline's own view, for a failure message."""
    try:
        names = ("ofsys_broker_up", "ofsys_backpressure", "ofsys_assigned_partitions")
        return ", ".join(f"{name} {process.sample(name):g}" for name in names) + (
            f", /readyz {process.ready()}"
        )
    except OSError as exc:
        return f"metrics unavailable: {exc!r}"


def test_broker_stall_is_ridden_out(harness: Harness) -> None:
    journey, family = harness.journey, harness.family
    # A broker of its own: stopping the session's would stall every other test.
    with EmbeddedBroker() as own:
        broker_process = own._process
        assert broker_process is not None
        topic = "stall"
        admin = AdminClient({"bootstrap.servers": own.bootstrap})
        topics.ensure(admin, topic, 4)
        env = pipeline_env(own, journey, topic, OFSYS_FLUSH_INTERVAL_MS="500")
        started: list[PipelineProcess] = []
        shop: SteadyShop | None = None
        try:
            pipeline = start_process(env, started)
            pid = pipeline.process.pid
            shop = SteadyShop(own.bootstrap, topic, family, rate=500)
            wait_alive(
                pipeline,
                lambda: sum(committed_now(admin, env["OFSYS_GROUP_ID"], topic, 4).values()),
                30,
                "the first commit",
            )
            time.sleep(3)
            readiness: list[tuple[float, int, list[str]]] = []
            exited: int | None = None
            os.kill(broker_process.pid, signal.SIGSTOP)
            stalled = time.monotonic()
            try:
                while time.monotonic() - stalled < STALL_S:
                    exited = pipeline.process.poll()
                    if exited is not None:
                        break
                    try:
                        status, body = pipeline.ready()
                        readiness.append((time.monotonic() - stalled, status, body["problems"]))
                    except OSError as exc:
                        readiness.append((time.monotonic() - stalled, 0, [repr(exc)]))
                    time.sleep(1)
            finally:
                os.kill(broker_process.pid, signal.SIGCONT)
            assert exited is None, (
                f"the pipeline exited with {exited} {time.monotonic() - stalled:.0f} s into "
                f"the stall; log tail:\n{pipeline.log()[-4000:]}"
            )
            time.sleep(5)
            shop.stop()
            ends = dict(shop.ends)
            not_ready = [
                (round(at), problems) for at, status, problems in readiness if status == 503
            ]
            failures = []
            if not any(
                "broker" in problem.lower() for _, problems in not_ready for problem in problems
            ):
                seen: list[
                    tuple[int, int, list[str]]
                ] = []  # each change of answer, with when (s into the stall)
                for at, status, problems in readiness:
                    if not seen or seen[-1][1:] != (status, problems):
                        seen.append((round(at), status, problems))
                failures.append(f"/readyz during the stall never named the broker: {seen}")
            try:
                wait_committed_to(own, pipeline, env["OFSYS_GROUP_ID"], topic, ends, 60)
            except AssertionError as exc:
                failures.append(f"after the stall ({gauges(pipeline)}): {exc}")
            assert not failures, "\n".join(failures)
            alive(pipeline)
            assert pipeline.process.pid == pid
            records = read_to_ends(own, topic, ends)
            print(
                f"broker stalled {STALL_S} s: {shop.produced} events produced "
                f"({len(records)} records with retried copies); not ready "
                f"{len(not_ready)} of {len(readiness)} probes"
            )
            assert_nothing_lost_or_doubled(journey, family, good_only(records))
            assert journey.ledger()["conflicts"] == 0
            assert pipeline.terminate() == 0
        finally:
            if broker_process.poll() is None:
                os.kill(broker_process.pid, signal.SIGCONT)
            if shop is not None:
                shop.halt()
            for process in started:
                process.kill()
            # Its storage is in memory: killed at once, as with clients still connected a
            # SIGTERM leaves Tansu waiting out EmbeddedBroker.stop's 5 s.
            if broker_process.poll() is None:
                broker_process.kill()
                broker_process.wait(10)


# -- 4. a far-future timestamp ---------------------------------------------------------------------


def on_partition(prefix: str, partition: int, count: int = 4) -> str:
    """`prefix`, or `prefix-<n>` for the first n that murmur2 puts on `partition`."""
    murmur2 = PARTITIONERS["murmur2"]
    for n in range(10_000):
        name = prefix if n == 0 else f"{prefix}-{n}"
        if murmur2(name.encode(), count) == partition:
            return name
    raise AssertionError("no such name")


def test_far_future_timestamp_fires_nothing_early_and_forgets_nothing(harness: Harness) -> None:
    journey = harness.journey
    pipeline = harness.start(
        OFSYS_ABANDONED_CART_AFTER_S=str(ABANDONED_AFTER_S),
        OFSYS_BROWSE_ABANDONED_AFTER_S="0",
        OFSYS_FLUSH_INTERVAL_MS="200",
    )
    wait_alive(
        pipeline, lambda: pipeline.sample("ofsys_assigned_partitions") == 4, 30, "assignment"
    )
    far_cart = "far-future"
    partition = PARTITIONERS["murmur2"](far_cart.encode(), 4)
    carts = [on_partition(f"G{i}", partition) for i in range(1, 6)]  # with the far event
    activity: dict[str, list[int]] = {}  # cart -> its events' times (ms)
    for cart in carts:
        event = added(cart, f"{cart.lower()}@example.ru")
        activity[cart] = [event["timestamp"]]
        harness.send(event)
    wait_alive(
        pipeline,
        lambda: set(carts) <= set(journey_view(journey)[0]),
        30,
        "the five carts in Journey",
    )
    far = added(far_cart, "far@example.ru", timestamp=10**15)
    harness.send(far)
    g1 = carts[0]
    for _ in range(2):  # within a second of the far event
        time.sleep(0.3)
        event = added(g1)
        activity[g1].append(event["timestamp"])
        harness.send(event)

    seen_at: dict[str, float] = {}  # trigger command id -> when it was first in the ledger

    def watch() -> bool:
        for command in journey.ledger()["commands"]:
            if command["call"] == "Trigger" and command["id"] not in seen_at:
                seen_at[command["id"]] = time.time()
        return set(carts) <= set(triggers(journey))

    last_s = max(max(times) for times in activity.values()) / 1000
    try:
        wait_alive(
            pipeline,
            watch,
            last_s + ABANDONED_AFTER_S + 8 - time.time(),
            "the five carts' AbandonedCart triggers",
        )
    except AssertionError as exc:
        alive(pipeline)
        timed_out: AssertionError | None = exc
    else:
        timed_out = None

    fired = triggers(journey)
    early = []  # a trigger in Journey less than the threshold after its cart's last event
    for cart, commands in fired.items():
        for command in commands:
            at = seen_at.get(command["id"], time.time())
            last_before = max((t for t in activity.get(cart, []) if t / 1000 <= at), default=0)
            quiet_s = at - last_before / 1000
            if quiet_s < ABANDONED_AFTER_S - 0.1:
                early.append(
                    f"{cart} in Journey {quiet_s:.1f} s after its last event "
                    f"(lastActivity {command['args'].get('lastActivity')}, events {activity[cart]})"
                )
    assert not early, f"AbandonedCart fired before {ABANDONED_AFTER_S} s of quiet: {early}"
    carts_view, _ = journey_view(journey)
    price = PRICE
    trail = [
        (c["id"], c["call"], c["args"]) for c in journey.ledger()["commands"] if c["cartId"] == g1
    ]
    assert carts_view.get(g1) == (3 * price, {"sku-1": (3, price, "Widget")}), (
        f"Journey holds {g1} as {carts_view.get(g1)}; its commands: {trail}"
    )
    assert journey.ledger()["conflicts"] == 0
    assert timed_out is None, f"{timed_out}; fired: {sorted(fired)}"
    assert all(len(commands) == 1 for commands in fired.values()), fired
    assert fired[g1][0]["args"]["items"] == [
        {"idProduct": "sku-1", "quantity": 3, "productName": "Widget", "priceunit": price}
    ]
    dead = harness.dlq(1, timeout_s=10)
    assert [(m.key(), headers_of(m).get("ofsys.reason")) for m in dead] == [
        (far_cart.encode(), b"invalid-value")
    ], [(m.key(), headers_of(m)) for m in dead]
    assert b"timestamp" in headers_of(dead[0]).get("ofsys.error", b"")
    alive(pipeline)


def triggers(journey: JourneyEmulator) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for command in journey.ledger()["commands"]:
        if command["call"] == "Trigger" and command["args"]["name"] == "AbandonedCart":
            found.setdefault(command["cartId"], []).append(command)
    return found


# -- 5. a price-only change ------------------------------------------------------------------------


def test_price_only_change_reaches_journey(harness: Harness) -> None:
    journey = harness.journey
    pipeline = harness.start()
    cart = "sale"

    def page(price: float) -> dict[str, Any]:
        line = {"product": {**WIDGET, "unitSalePrice": price}, "quantity": 1, "subtotal": price}
        snapshot = {"id": cart, "checkoutStep": 1, "lineItems": [line], "total": price}
        return {
            "id": event_id(),
            "name": "Viewed Page",
            "timestamp": now_ms(),
            "cart": snapshot,
            "user": {"email": "sale@example.ru"},
        }

    def held() -> Any:
        return journey_view(journey)[0].get(cart)

    harness.send(page(100.0))
    wait_alive(pipeline, lambda: held() == (100.0, {"sku-1": (1, 100.0, "Widget")}), 30, "the cart")
    harness.send(page(80.0))
    want = (80.0, {"sku-1": (1, 80.0, "Widget")})
    try:
        wait_alive(pipeline, lambda: held() == want, 10, "the sale price in Journey")
    except AssertionError as exc:
        trail = [
            (c["id"], c["call"], c["args"])
            for c in journey.ledger()["commands"]
            if c["cartId"] == cart
        ]
        raise AssertionError(f"{exc}: Journey holds {held()}, want {want}; {trail}") from None
    commands = [c for c in journey.ledger()["commands"] if c["cartId"] == cart]
    items = [c["args"] for c in commands if c["call"] == "ECommerce.AddCartItem"]
    carts = [
        (c["call"], c["args"]["TotalPrice"])
        for c in commands
        if c["call"] in ("ECommerce.AddCart", "ECommerce.UpdateCart")
    ]
    assert items[-1]["idProduct"] == "sku-1" and items[-1]["quantity"] == 1
    assert items[-1]["priceunit"] == 80.0
    assert carts[-1] == ("ECommerce.UpdateCart", 80.0)
    assert journey.ledger()["conflicts"] == 0
    alive(pipeline)
