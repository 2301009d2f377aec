"""The time range of `explain` and `replay`: ISO 8601 or epoch milliseconds, checked.

Times are the records' Kafka timestamps (when they were produced, unless the producer
set them), the ones `offsets_for_times` searches. A bad range is a ConfigError: one
line and exit 2.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import NamedTuple

from ..errors import ConfigError


def parse_time(text: str, option: str) -> int:
    """`2026-11-25T14:00:00Z`, `2026-11-25T14:00:00+01:00`, `2026-11-25` (UTC midnight)
    or epoch milliseconds (`1795615200000`) -> epoch milliseconds."""
    raw = text.strip()
    if raw.isdigit():
        return int(raw)
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{option} {text!r} is neither ISO 8601 (2026-11-25T14:00:00Z) nor epoch milliseconds"
        ) from None
    if when.tzinfo is None:  # a time without a zone is UTC, like the logs
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def iso(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC, to the millisecond."""
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TimeRange(NamedTuple):
    """Inclusive bounds in epoch milliseconds; None: open on that side."""

    from_ms: int | None
    to_ms: int | None

    @classmethod
    def parse(cls, from_text: str | None, to_text: str | None) -> TimeRange:
        from_ms = None if from_text is None else parse_time(from_text, "--from")
        to_ms = None if to_text is None else parse_time(to_text, "--to")
        if from_ms is not None and to_ms is not None and from_ms > to_ms:
            raise ConfigError(f"--from {iso(from_ms)} is after --to {iso(to_ms)}")
        return cls(from_ms, to_ms)

    def __contains__(self, ms: object) -> bool:
        if not isinstance(ms, int):
            return False
        return (self.from_ms is None or ms >= self.from_ms) and (
            self.to_ms is None or ms <= self.to_ms
        )

    def end_ms(self) -> int:
        """The clock at the range's end: `to`, but never past now."""
        now = int(time.time() * 1000)
        return now if self.to_ms is None else min(self.to_ms, now)

    def describe(self) -> str:
        start = "the beginning" if self.from_ms is None else iso(self.from_ms)
        end = "the end" if self.to_ms is None else iso(self.to_ms)
        return f"between {start} and {end}"
