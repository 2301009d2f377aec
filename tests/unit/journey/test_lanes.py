"""The worker's lanes: several requests in flight, each cart's commands still in the
order of its events, windows still completed in the order submitted, and one lane's
retries holding back the windows it has not finished (never a later one's commit)."""

from __future__ import annotations

import threading
import time

from pipeline.journey.batch import Batch
from pipeline.journey.commands import Command
from pipeline.runtime.checkpoint import Window

from .test_delivery import FakeTransport, Workers, command, ids, transient, until, workers

__all__ = ["workers"]


def cart_window(carts: range, step: int) -> Window:
    """A window holding, for every cart, two commands of this step in order."""
    w = Window(0)
    for cart in carts:
        for n in (0, 1):
            c: Command = command(cart)
            c["id"] = f"c-{cart}@{step}/{n}"
            w.commands.append(c)
    w.events = len(w.commands)
    return w


class Concurrency(FakeTransport):
    """Accepts after a short wait, counting the requests in flight at once."""

    def __init__(self, delay_s: float = 0.02) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.now = 0
        self.most = 0
        self._lock = threading.Lock()

    def send(self, batch: Batch) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.delay_s)
        with self._lock:
            self.now -= 1
        super().send(batch)


def test_lanes_keep_each_carts_order_and_complete_windows_in_order(workers: Workers) -> None:
    transport = Concurrency()
    worker = workers(transport, max_commands=4, lanes=4)
    windows = [cart_window(range(40), step) for step in range(3)]
    for w in windows:
        worker.submit(w)
    assert worker.wait_idle(5.0)
    assert worker.completed() == windows
    assert transport.most > 1  # several requests were in flight at once
    assert sorted(transport.accepted) == sorted(c["id"] for w in windows for c in w.commands)
    for cart in range(40):
        mine = [i for i in transport.accepted if i.startswith(f"c-{cart}@")]
        assert mine == [f"c-{cart}@{step}/{n}" for step in range(3) for n in (0, 1)]


def test_one_lane_retrying_holds_back_the_windows_it_has_not_delivered(
    workers: Workers,
) -> None:
    gate = threading.Event()

    def cart_0_fails(batch: Batch) -> None:  # only the lane that holds cart 0 retries
        if not gate.is_set() and any(i.startswith("c-0@") for i in ids(batch)):
            time.sleep(0.001)
            raise transient()

    transport = FakeTransport(*[cart_0_fails] * 100_000)
    worker = workers(transport, max_commands=100, lanes=4)
    first, second = cart_window(range(20), 0), cart_window(range(20), 1)
    worker.submit(first)
    worker.submit(second)
    until(lambda: worker.retrying)
    # the other lanes deliver both windows; neither is complete while cart 0's lane retries
    lane = hash("c-0") % 4
    others = [c for w in (first, second) for c in w.commands if hash(c["cartId"]) % 4 != lane]
    until(lambda: len(transport.accepted) >= len(others))
    assert worker.completed() == []
    assert worker.outstanding == 2
    gate.set()
    assert worker.wait_idle(2.0)
    assert worker.completed() == [first, second]  # in order, never the second alone
    assert not worker.retrying


def test_one_lane_is_the_old_single_request_worker(workers: Workers) -> None:
    transport = Concurrency(delay_s=0.005)
    worker = workers(transport, max_commands=3, lanes=1)
    w = cart_window(range(10), 0)
    worker.submit(w)
    assert worker.wait_idle(2.0)
    assert transport.most == 1
    assert transport.accepted == [c["id"] for c in w.commands]
