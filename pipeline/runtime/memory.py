"""Memory the allocator holds but no object uses, given back to the system.

Why: a window's commands and records (tens of MiB while a backlog is caught up) are
freed when it is sealed, yet glibc keeps the pages, scattered between the long-lived
state, so RSS follows the largest windows seen rather than the state held.
`malloc_trim(0)` returns every whole free page; elsewhere (musl, macOS) it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM = _malloc_trim()


def release() -> None:
    """Give free heap pages back to the system (glibc only)."""
    if _TRIM is not None:
        _TRIM(0)
