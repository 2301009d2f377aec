"""memory: free heap pages given back, where the C library can."""

from __future__ import annotations

from pipeline.runtime import memory


def test_release_gives_freed_pages_back_without_error() -> None:
    garbage = [bytes(4096) for _ in range(10_000)]  # 40 MiB on the heap, then freed
    del garbage
    memory.release()
    memory.release()  # idempotent, cheap when nothing is free
