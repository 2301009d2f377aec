"""Logs: one JSON object per line on stderr, with context fields passed as `extra`.

Never called per event on the hot path. Context keys the pipeline uses: topic,
partition, offset, batch_id, reason. Credentials and e-mails are never passed in.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def fatal(message: str, *, exc_info: bool = False) -> None:
    """The last line before a non-zero exit: JSON like every other line, also from a
    command that never set logging up."""
    root = logging.getLogger()
    if not any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers):
        setup()
    get("app").critical(message, exc_info=exc_info)


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"ofsys.{name}")
