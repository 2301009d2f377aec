"""delivery: every row of the contract's response table, and the in-order worker.

Driven through a fake `Transport` (no HTTP) and a recording `wait` (no sleeping), so
the whole file runs in milliseconds; the worker tests use its real thread with waits of
zero and short polls.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from pipeline.errors import (
    RETRY_REASONS,
    RejectedCommandsError,
    RetryReason,
    ShutdownTimeoutError,
    TransientDeliveryError,
    UnauthorizedError,
)
from pipeline.journey import client
from pipeline.journey.batch import Batch
from pipeline.journey.client import JourneyClient, Transport
from pipeline.journey.commands import Command
from pipeline.journey.delivery import Delivery
from pipeline.journey.worker import DeliveryWorker
from pipeline.metrics import Metrics
from pipeline.runtime.checkpoint import Window

MAX_BACKOFF_S = 1.0
Answer = BaseException | Callable[[Batch], None] | None


def command(n: int, call: str = "ECommerce.SubmitCart") -> Command:
    return {
        "id": f"e-{n}/0",
        "ts": int(time.time() * 1000) - 1000,
        "cartId": f"c-{n}",
        "email": None,
        "call": call,
        "args": {"idCart": f"c-{n}"},
    }


def make(commands: list[Command]) -> Batch:
    return Batch(commands, [orjson.dumps(c) for c in commands])


def ids(batch_or_commands: Batch | list[Command]) -> list[str]:
    commands = (
        batch_or_commands.commands if isinstance(batch_or_commands, Batch) else batch_or_commands
    )
    return [c["id"] for c in commands]


def transient(reason: RetryReason = "server_error", after: float | None = None) -> Exception:
    return TransientDeliveryError("Journey answered 503", reason=reason, retry_after=after)


def rejected(errors: dict[str, str] | None = None, status: int = 400) -> Exception:
    return RejectedCommandsError(
        f"Journey rejected the batch ({status})", status=status, errors=errors or {}
    )


def unauthorized(status: int = 401) -> Exception:
    return UnauthorizedError(f"Journey refused the account key ({status})", status=status)


class FakeTransport:
    """Answers each send with the next scripted answer (accept once the script is out):
    None accepts, an exception is raised, a callable decides from the batch."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.sent: list[Batch] = []
        self.accepted: list[str] = []
        self.closed = False

    def send(self, batch: Batch) -> None:
        self.sent.append(batch)
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, BaseException):
            raise answer
        if answer is not None:
            answer(batch)
        self.accepted.extend(ids(batch))

    def close(self) -> None:
        self.closed = True


def held(gate: threading.Event) -> Callable[[Batch], None]:
    """Accepts, once `gate` is set (or after a second)."""

    def answer(batch: Batch) -> None:
        gate.wait(1.0)

    return answer


def rejecting(bad: set[str], status: int = 400) -> Callable[[Batch], None]:
    """Rejects, naming none, every batch that holds one of `bad`."""

    def answer(batch: Batch) -> None:
        if bad & set(ids(batch)):
            raise rejected(status=status)

    return answer


class Harness:
    def __init__(self, transport: FakeTransport, *, seed: int = 7) -> None:
        self.transport = transport
        self.metrics = Metrics(CollectorRegistry())
        self.waits: list[float] = []
        self.dead: list[tuple[str, str]] = []
        self.delivery = Delivery(
            transport,
            self.metrics,
            max_backoff_s=MAX_BACKOFF_S,
            wait=self.waits.append,
            dead_letter=lambda c, message: self.dead.append((c["id"], message)),
            rng=random.Random(seed),
        )

    def value(self, name: str, **labels: str) -> float:
        sample = self.metrics.registry.get_sample_value(name, labels)
        assert sample is not None, (name, labels)
        return sample

    def batches(self, result: str) -> float:
        return self.value("ofsys_journey_batches_total", result=result)

    def sent(self) -> list[list[str]]:
        return [ids(b) for b in self.transport.sent]


def test_the_run_loop_imports_stay_in_delivery() -> None:
    assert JourneyClient is client.JourneyClient
    assert Transport is client.Transport
    fake: Transport = FakeTransport()  # the seam: a fake is a transport
    fake.close()


# 2xx


def test_accepted_counts_the_batch_and_commands_by_call() -> None:
    h = Harness(FakeTransport(None))
    batch = make(
        [command(0), command(1, "ECommerce.AddCart"), command(2), command(3, "ECommerce.AddCart")]
    )
    h.delivery.deliver(batch)
    assert h.sent() == [ids(batch)]
    assert (h.waits, h.dead) == ([], [])
    assert h.batches("accepted") == 1
    assert h.batches("retried") == h.batches("rejected") == h.batches("unauthorized") == 0
    assert h.value("ofsys_commands_delivered_total", call="ECommerce.SubmitCart") == 2
    assert h.value("ofsys_commands_delivered_total", call="ECommerce.AddCart") == 2
    assert h.value("ofsys_commands_delivered_total", call="Track") == 0
    assert h.value("ofsys_journey_sent_bytes_total") == len(batch.body)
    assert h.value("ofsys_journey_request_duration_seconds_count") == 1
    assert h.value("ofsys_end_to_end_latency_seconds_count") == 4
    assert h.value("ofsys_journey_unauthorized") == 0


# 400, 422 with named commands


@pytest.mark.parametrize("status", [400, 422])
def test_named_rejections_are_dead_lettered_and_the_rest_resent_once_in_order(
    status: int,
) -> None:
    named = {"e-1/0": "arg 'quantity' must be an integer", "e-3/0": "unknown product"}
    h = Harness(FakeTransport(rejected(named, status)))
    batch = make([command(n) for n in range(5)])
    h.delivery.deliver(batch)
    assert h.dead == [("e-1/0", named["e-1/0"]), ("e-3/0", named["e-3/0"])]
    assert h.sent() == [ids(batch), ["e-0/0", "e-2/0", "e-4/0"]]
    assert h.transport.accepted == ["e-0/0", "e-2/0", "e-4/0"]
    assert (h.batches("rejected"), h.batches("accepted")) == (1, 1)
    assert h.value("ofsys_commands_delivered_total", call="ECommerce.SubmitCart") == 3
    assert h.waits == []


def test_when_every_command_is_named_nothing_is_resent() -> None:
    h = Harness(FakeTransport(rejected({"e-0/0": "a", "e-1/0": "b"})))
    h.delivery.deliver(make([command(0), command(1)]))
    assert h.dead == [("e-0/0", "a"), ("e-1/0", "b")]
    assert len(h.transport.sent) == 1
    assert h.batches("accepted") == 0


def test_names_outside_the_batch_count_as_no_names() -> None:
    h = Harness(FakeTransport(rejected({"elsewhere": "m"}), None, None))
    h.delivery.deliver(make([command(0), command(1)]))
    assert h.dead == []
    assert h.sent() == [["e-0/0", "e-1/0"], ["e-0/0"], ["e-1/0"]]


# 400, 422 without names


@pytest.mark.parametrize("status", [400, 422])
def test_unnamed_rejections_halve_until_the_rejected_are_alone(status: int) -> None:
    h = Harness(FakeTransport(*[rejecting({"e-5/0"}, status)] * 10))
    batch = make([command(n) for n in range(8)])
    h.delivery.deliver(batch)
    assert h.sent() == [
        ids(batch),
        ["e-0/0", "e-1/0", "e-2/0", "e-3/0"],
        ["e-4/0", "e-5/0", "e-6/0", "e-7/0"],
        ["e-4/0", "e-5/0"],
        ["e-4/0"],
        ["e-5/0"],
        ["e-6/0", "e-7/0"],
    ]
    assert h.dead == [("e-5/0", f"Journey rejected the batch ({status})")]
    assert h.transport.accepted == [f"e-{n}/0" for n in (0, 1, 2, 3, 4, 6, 7)]
    assert (h.batches("rejected"), h.batches("accepted")) == (4, 3)


def test_several_unnamed_rejections_are_each_isolated() -> None:
    h = Harness(FakeTransport(*[rejecting({"e-0/0", "e-6/0"})] * 20))
    h.delivery.deliver(make([command(n) for n in range(7)]))
    assert [i for i, _ in h.dead] == ["e-0/0", "e-6/0"]
    assert h.transport.accepted == [f"e-{n}/0" for n in range(1, 6)]


def test_a_single_rejected_command_without_names_is_dead_lettered() -> None:
    h = Harness(FakeTransport(rejected()))
    h.delivery.deliver(make([command(0)]))
    assert h.dead == [("e-0/0", "Journey rejected the batch (400)")]
    assert len(h.transport.sent) == 1


# 401, 403


@pytest.mark.parametrize("status", [401, 403])
def test_unauthorized_waits_retries_and_clears_on_the_next_2xx(status: int) -> None:
    h = Harness(FakeTransport(unauthorized(status), unauthorized(status), None))
    seen: list[tuple[bool, float]] = []

    def wait(seconds: float) -> None:
        h.waits.append(seconds)
        seen.append((h.delivery.unauthorized, h.value("ofsys_journey_unauthorized")))

    h.delivery._wait = wait
    batch = make([command(0), command(1)])
    h.delivery.deliver(batch)
    assert h.waits == [MAX_BACKOFF_S, MAX_BACKOFF_S]
    assert seen == [(True, 1.0), (True, 1.0)]
    assert h.dead == []
    assert [b.batch_id for b in h.transport.sent] == [batch.batch_id] * 3
    assert (h.batches("unauthorized"), h.batches("accepted")) == (2, 1)
    assert h.delivery.unauthorized is False
    assert h.value("ofsys_journey_unauthorized") == 0


def test_unauthorized_stays_set_across_batches_until_one_is_accepted() -> None:
    def stop(seconds: float) -> None:
        raise ShutdownTimeoutError("deadline")

    h = Harness(FakeTransport(unauthorized()))
    h.delivery._wait = stop
    with pytest.raises(ShutdownTimeoutError):
        h.delivery.deliver(make([command(0)]))
    assert h.delivery.unauthorized is True
    assert h.value("ofsys_journey_unauthorized") == 1
    assert h.dead == []


# 408, 425, 429, 5xx, other statuses, timeouts, connection errors


@pytest.mark.parametrize("reason", RETRY_REASONS)
def test_transient_failures_honour_retry_after_and_resend_the_same_batch(
    reason: RetryReason,
) -> None:
    h = Harness(FakeTransport(transient(reason, 3.0), transient(reason, 0.0), None))
    batch = make([command(0), command(1)])
    h.delivery.deliver(batch)
    assert h.waits == [3.0, 0.0]
    assert [b.body for b in h.transport.sent] == [batch.body] * 3
    assert h.dead == []
    assert (h.batches("retried"), h.batches("accepted")) == (2, 1)
    assert h.value("ofsys_journey_retries_total", reason=reason) == 2
    assert sum(h.value("ofsys_journey_retries_total", reason=r) for r in RETRY_REASONS) == 2


def test_retry_after_may_exceed_the_backoff_cap() -> None:
    h = Harness(FakeTransport(transient("throttled", 120.0)))
    h.delivery.deliver(make([command(0)]))
    assert h.waits == [120.0]


def test_without_retry_after_backoff_is_exponential_with_full_jitter_capped() -> None:
    failures = 12
    h = Harness(FakeTransport(*[transient() for _ in range(failures)]), seed=11)
    h.delivery.deliver(make([command(0)]))
    draws = random.Random(11)
    caps = [min(MAX_BACKOFF_S, 0.2 * 2**attempt) for attempt in range(1, failures + 1)]
    assert caps[:3] == [0.4, 0.8, MAX_BACKOFF_S]
    assert h.waits == [draws.uniform(0, cap) for cap in caps]
    assert all(0 <= wait <= cap for wait, cap in zip(h.waits, caps, strict=True))
    assert h.transport.accepted == ["e-0/0"]


def test_backoff_starts_again_after_an_accepted_part() -> None:
    # first half: one failure; second half: one failure. Both draw from the first cap.
    h = Harness(FakeTransport(rejected(), transient(), None, transient(), None), seed=3)
    h.delivery.deliver(make([command(0), command(1)]))
    draws = random.Random(3)
    assert h.waits == [draws.uniform(0, 0.4), draws.uniform(0, 0.4)]


def test_a_batch_is_never_dropped_however_long_journey_fails() -> None:
    answers: list[Answer] = [transient(), unauthorized(), transient("timeout")] * 40
    h = Harness(FakeTransport(*answers))
    h.delivery.deliver(make([command(0), command(1)]))
    assert h.transport.accepted == ["e-0/0", "e-1/0"]
    assert len(h.waits) == 120
    assert h.dead == []


def test_only_wait_ends_a_delivery_early() -> None:
    def stop(seconds: float) -> None:
        raise ShutdownTimeoutError("deadline")

    h = Harness(FakeTransport(transient()))
    h.delivery._wait = stop
    with pytest.raises(ShutdownTimeoutError):
        h.delivery.deliver(make([command(0)]))
    assert (h.transport.accepted, h.dead) == ([], [])


# the worker


def window(*numbers: int) -> Window:
    w = Window(0)
    w.commands = [command(n) for n in numbers]
    w.events = len(numbers)
    return w


def until(condition: Callable[[], bool], timeout_s: float = 1.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.001)


class Workers:
    def __init__(self) -> None:
        self.started: list[DeliveryWorker] = []
        self.dead: list[str] = []

    def __call__(self, transport: FakeTransport, **kwargs: Any) -> DeliveryWorker:
        settings: dict[str, Any] = {"max_commands": 2, "max_bytes": 1_000_000}
        settings["max_backoff_s"] = 0.0
        settings.update(kwargs)
        worker = DeliveryWorker(
            transport,
            Metrics(CollectorRegistry()),
            lambda c, message: self.dead.append(c["id"]),
            **settings,
        )
        self.started.append(worker)
        return worker


@pytest.fixture
def workers() -> Iterator[Workers]:
    made = Workers()
    yield made
    for worker in made.started:
        worker.stop(time.monotonic())
        worker.join(1.0)
        assert not any(t.is_alive() for t in worker._threads)


def test_worker_delivers_windows_in_order(workers: Workers) -> None:
    transport = FakeTransport()
    worker = workers(transport)
    windows = [window(0, 1, 2), window(3), window(4, 5)]
    for w in windows:
        worker.submit(w)
    assert worker.wait_idle(1.0)
    assert worker.completed() == windows
    assert worker.completed() == []
    assert worker.outstanding == 0
    assert [ids(b) for b in transport.sent] == [
        ["e-0/0", "e-1/0"],
        ["e-2/0"],
        ["e-3/0"],
        ["e-4/0", "e-5/0"],
    ]
    assert (worker.retrying, worker.failure, worker.unauthorized) == (False, None, False)


def test_worker_is_retrying_while_a_window_waits_to_be_sent_again(workers: Workers) -> None:
    gate = threading.Event()
    transport = FakeTransport(transient(after=0.0), held(gate))
    worker = workers(transport)
    w = window(0)
    worker.submit(w)
    until(lambda: len(transport.sent) == 2)
    assert worker.retrying is True
    assert worker.outstanding == 1
    assert worker.completed() == []
    gate.set()
    assert worker.wait_idle(1.0)
    assert worker.retrying is False
    assert worker.completed() == [w]


def test_worker_reports_unauthorized_until_journey_accepts(workers: Workers) -> None:
    gate = threading.Event()
    transport = FakeTransport(unauthorized(), held(gate))
    worker = workers(transport)
    worker.submit(window(0))
    until(lambda: len(transport.sent) == 2)
    assert worker.unauthorized is True
    gate.set()
    assert worker.wait_idle(1.0)
    assert worker.unauthorized is False
    assert workers.dead == []


def test_worker_stop_finishes_what_is_queued_before_the_deadline(workers: Workers) -> None:
    transport = FakeTransport()
    worker = workers(transport)
    windows = [window(0), window(1)]
    for w in windows:
        worker.submit(w)
    worker.stop(time.monotonic() + 5.0)
    worker.join(1.0)
    assert not any(t.is_alive() for t in worker._threads)
    assert worker.completed() == windows
    assert worker.outstanding == 0


def test_worker_stop_gives_up_retrying_past_the_deadline(workers: Workers) -> None:
    transport = FakeTransport(*[transient(after=60.0)] * 5)
    worker = workers(transport)
    worker.submit(window(0))
    worker.submit(window(1))
    until(lambda: worker.retrying)
    worker.stop(time.monotonic())
    worker.join(1.0)
    assert not any(t.is_alive() for t in worker._threads)
    assert len(transport.sent) == 1
    assert worker.completed() == []
    assert worker.outstanding == 2  # left uncommitted, processed again after a restart
    assert worker.failure is None  # a shutdown timeout is not a failure
    assert workers.dead == []


def test_worker_wait_raises_shutdown_timeout_past_the_deadline(workers: Workers) -> None:
    worker = workers(FakeTransport())
    worker.stop(time.monotonic() - 1.0)
    with pytest.raises(ShutdownTimeoutError):
        worker._sleep(0, 10.0)


def test_worker_surfaces_an_unexpected_failure(workers: Workers) -> None:
    boom = RuntimeError("boom")
    worker = workers(FakeTransport(boom))
    first, second = window(0), window(1)
    worker.submit(first)
    worker.submit(second)
    assert worker.wait_idle(1.0) is False
    assert worker.failure is boom
    assert worker.completed() == []
    assert worker.outstanding == 2
