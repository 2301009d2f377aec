"""`FakeClock`: the settable clock (the `Clock` port), monotonic and wall time that
move only when told (`advance`) or slept."""

from __future__ import annotations

import time


class FakeClock:
    """Time that moves only by `advance` (or `sleep`, which advances it)."""

    def __init__(self, wall: float | None = None, monotonic: float = 1000.0) -> None:
        self.now = monotonic
        self.wall = time.time() if wall is None else wall

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += seconds
