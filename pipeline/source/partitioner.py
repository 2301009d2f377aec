"""Which partition a cart id belongs to, computed the way the shop's producers do, so
that re-keyed records land where the cart's correctly keyed records already are."""

from __future__ import annotations

import zlib
from collections.abc import Callable


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's default partitioner), as a signed 32-bit int."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length % 4
    if tail:
        base = length - tail
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def _murmur2_partition(key: bytes, count: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % count


def _crc32_partition(key: bytes, count: int) -> int:
    return zlib.crc32(key) % count


PARTITIONERS: dict[str, Callable[[bytes, int], int]] = {
    "murmur2": _murmur2_partition,  # Java clients, Kafka Streams, librdkafka murmur2*
    "crc32": _crc32_partition,  # librdkafka's default (consistent_random)
}
