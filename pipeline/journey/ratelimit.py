"""The account's Journey rate limit, shared by the group without a coordination service.

`RateLimit` holds two token buckets (requests and commands per second). Each member
takes the share of the group's limit that its input partitions are of the topic's
(`share(assigned, total)`, called by the run loop on every rebalance), so the members'
shares add up to the limit while the group's assignment covers every partition.
Invariant: over any interval the member sends at most its rate times the interval, plus
one second's worth (the bucket's depth) and one batch: a batch larger than the bucket
still goes once the bucket is full, and the debt it leaves is paid by waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

BURST_S = 1.0  # a bucket holds at most this many seconds of its rate
MAX_WAIT_S = 0.5  # waits are sliced so that a new share applies soon


class Bucket:
    """Tokens at `rate` per second, at most `rate * BURST_S` of them; a cost may be
    taken as soon as the balance is not negative, and may leave it negative (debt)."""

    __slots__ = ("rate", "tokens", "updated")

    def __init__(self, now: float) -> None:
        self.rate = 0.0
        self.tokens = 0.0
        self.updated = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.rate * BURST_S, self.tokens + self.rate * (now - self.updated))
        self.updated = now

    def wait_s(self) -> float:
        """Seconds until the balance is not negative (after `refill`); inf at rate 0."""
        if self.tokens >= -1e-9:  # float rounding must not leave a wait too short to pass
            return 0.0
        return -self.tokens / self.rate if self.rate > 0 else float("inf")


class RateLimit:
    """Requests and commands per second for the whole group (0: that one is unlimited)."""

    def __init__(
        self,
        requests_per_s: float,
        commands_per_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = (requests_per_s, commands_per_s)
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._buckets = (Bucket(now), Bucket(now))
        self.fraction = 1.0  # the member's share of the group's partitions
        self.share(1, 1)

    def share(self, assigned: int, total: int) -> None:
        """Take `assigned` of `total` input partitions' share of the group's limits."""
        with self._lock:
            now = self._clock()
            self.fraction = min(assigned, total) / total if total > 0 else 0.0
            for bucket, limit in zip(self._buckets, self.limits, strict=True):
                bucket.refill(now)
                bucket.rate = limit * self.fraction
                bucket.tokens = min(bucket.tokens, bucket.rate * BURST_S)

    def rates(self) -> tuple[float, float]:
        """This member's requests and commands per second now."""
        return self._buckets[0].rate, self._buckets[1].rate

    def delay(self, commands: int) -> float:
        """0 when a request of `commands` commands may go now (its tokens are taken);
        else how long to wait before asking again (at most MAX_WAIT_S)."""
        with self._lock:
            now = self._clock()
            wait = 0.0
            for bucket, limit in zip(self._buckets, self.limits, strict=True):
                if limit > 0:
                    bucket.refill(now)
                    wait = max(wait, bucket.wait_s())
            if wait > 0:
                return min(wait, MAX_WAIT_S)
            for bucket, limit, cost in zip(self._buckets, self.limits, (1, commands), strict=True):
                if limit > 0:
                    bucket.tokens -= cost
            return 0.0

    def __repr__(self) -> str:
        requests, commands = self.rates()
        return f"RateLimit(requests_per_s={requests:g}, commands_per_s={commands:g})"


def from_limits(requests_per_s: float, commands_per_s: float) -> RateLimit | None:
    """The limit, or None when neither is set (0)."""
    if requests_per_s <= 0 and commands_per_s <= 0:
        return None
    return RateLimit(requests_per_s, commands_per_s)
