"""The bench's pure parts: traffic shapes, the memory-shape backlog, and latency
percentiles from the Journey emulator's receipts. No I/O, so unit tests cover them."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .traffic import Event, ShopTraffic

SEED = 7  # every bench's traffic seed

# --shape: ShopTraffic's parameters. `default` is the traffic the bench always ran;
# `heavy-carts` is issue 12's: 20,000 visitors, about 40 % of events page views carrying
# the full cart, carts of several lines (each new visitor's cart starts with 5).
SHAPES: dict[str, dict[str, Any]] = {
    "default": {"visitors": 5000},
    "heavy-carts": {"visitors": 20_000, "page_views": 0.37, "cart_lines": 5},
}


def traffic(shape: str, *, seed: int = SEED, clock: Callable[[], int] | None = None) -> ShopTraffic:
    """The shape's shop traffic with 1 % replays and 0.1 % bad records."""
    return ShopTraffic(
        seed=seed, duplicate_rate=0.01, invalid_rate=0.001, clock=clock, **SHAPES[shape]
    )


def cart_backlog(
    carts: int, *, seed: int = SEED, clock: Callable[[], int] | None = None, prefix: str = "c"
) -> Iterator[tuple[str, Event, None]]:
    """Issue 12's memory shape: per cart, two Added Product events, the first carrying
    the shopper's e-mail; so `carts` carts are 2 x `carts` events and event ids."""
    rng = random.Random(seed)
    now = clock or (lambda: int(time.time() * 1000))
    for i in range(carts):
        cart_id = f"{prefix}-{i}"
        for n in range(2):
            pid = (i + 7 * n) % 200
            event: Event = {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "name": "Added Product",
                "timestamp": now(),
                "cart": {"id": cart_id},
                "product": {"id": f"sku-{pid}", "name": f"Product {pid}", "unitSalePrice": 99.0},
                "quantity": n + 1,
            }
            if n == 0:
                event["user"] = {"email": f"visitor{i}@example.com"}
            yield cart_id, event, None


def _varint_end(value: bytes, at: int) -> int:
    """Where the Avro varint starting at `at` ends; IndexError past the value."""
    while value[at] & 0x80:
        at += 1
    return at + 1


def _zigzag(n: int) -> bytes:
    """An Avro long: zig-zag, then 7 bits a byte, least significant first."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _skip_string(value: bytes, at: int) -> int:
    """Where the Avro string starting at `at` ends (its length: a zig-zag varint)."""
    end = _varint_end(value, at)
    length = 0
    for byte in reversed(value[at:end]):
        length = length << 7 | byte & 0x7F
    return end + (length >> 1)  # a length is never negative: no sign bit to undo


def timestamp_span(value: bytes) -> tuple[int, int] | None:
    """Where a single-object SiteEvent value holds `timestamp` (the varint after the id
    and name strings, the schema's first fields), or None for a value that is not one."""
    if value[:2] != b"\xc3\x01":
        return None
    try:
        at = _skip_string(value, _skip_string(value, 10))
        return at, _varint_end(value, at)
    except IndexError:
        return None


def restamped(
    records: Iterator[tuple[str, bytes]], clock: Callable[[], int]
) -> Iterator[tuple[str, bytes]]:
    """Records made ahead of time, each stamped with `clock()` when it is pulled: the
    timestamp's bytes are replaced in place (same length; else left, with the time they
    were made). So a paced producer only stamps and sends, and its CPU is not taken from
    the pipeline it measures. Values that are not SiteEvents pass unchanged."""
    for key, value in records:
        span = timestamp_span(value) if value else None
        if span is not None:
            start, end = span
            stamp = _zigzag(clock())
            if len(stamp) == end - start:
                yield key, value[:start] + stamp + value[end:]
                continue
        yield key, value


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0 < q <= 100) of sorted values, nearest rank."""
    if not ordered:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_ms(receipts: Sequence[Sequence[float]]) -> dict[str, float]:
    """p50/p95/p99/max of receipt - ts (ms) over [ts, receipt] pairs, and their count."""
    values = sorted(received - ts for ts, received in receipts)
    if not values:
        return {"commands": 0}
    summary = {f"p{q}_ms": round(percentile(values, q), 1) for q in (50, 95, 99)}
    return {"commands": len(values), **summary, "max_ms": round(values[-1], 1)}


def paced(records: Iterator[Any], rate: float, count: int, step: int = 10) -> Iterator[Any]:
    """`count` items of `records`, pulled at `rate` per second: each is made (and so
    timestamped) when it is due, not ahead of time; sleeps every `step` items."""
    started = time.monotonic()
    for n in range(count):
        if n % step == 0:
            ahead = n / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        yield next(records)
