"""Config values: the parsers that validate each option's raw string, and `Secret`.

Owns `KEY_RE` (the account key's shape), the `Secret` wrapper that keeps a credential
out of reprs and logs, one parser per kind of option value (each raises ValueError with
a message that never echoes a credential), and `check_account_key`.
"""

from __future__ import annotations

import math
import re
from urllib.parse import urlsplit

from .errors import ConfigError

KEY_RE = re.compile(r"[A-Za-z0-9]{32}")


class Secret:
    """A credential that never prints: repr and str are masked, `reveal()` is explicit."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    return value


def _account_key(value: str) -> Secret:
    if not KEY_RE.fullmatch(value):
        # Never echo the value: it is a credential even when malformed.
        raise ValueError(f"must be exactly 32 letters and digits (got {len(value)} characters)")
    return Secret(value)


def _int(value: str, expected: str) -> int:
    """`value` as an integer, or ValueError saying what was `expected` (never int()'s
    own message, which quotes the value)."""
    try:
        return int(value.strip().replace("_", ""))
    except ValueError:
        raise ValueError(expected) from None


def _number(value: str, expected: str) -> float:
    """`value` as a finite number, or ValueError saying what was `expected`."""
    try:
        number = float(value)
    except ValueError:
        raise ValueError(expected) from None
    if not math.isfinite(number):
        raise ValueError(expected)
    return number


def _int_within(value: str, low: int, high: float, expected: str) -> int:
    """`value` as an integer from `low` to `high`, or ValueError(`expected`)."""
    number = _int(value, expected)
    if not low <= number <= high:
        raise ValueError(expected)
    return number


def _positive_int(value: str) -> int:
    return _int_within(value, 1, math.inf, "must be a positive integer")


def _in_flight(value: str) -> int:
    return _int_within(value, 1, 64, "must be an integer from 1 to 64")


def _non_negative_int(value: str) -> int:
    return _int_within(value, 0, math.inf, "must be 0 or a positive integer")


def _any_int(value: str) -> int:
    return _int(value, "must be an integer")


def _rate(value: str) -> float:
    expected = "must be a rate per second, 0 (no limit) or more"
    number = _number(value, expected)  # refuses NaN and infinity
    if number < 0:
        raise ValueError(expected)
    return number


def _port(value: str) -> int:
    return _int_within(value, 0, 65535, "must be a port number from 0 to 65535")


def _positive_float(value: str) -> float:
    expected = "must be a positive number"
    number = _number(value, expected)
    if number <= 0:
        raise ValueError(expected)
    return number


def _non_negative_float(value: str) -> float:
    expected = "must be 0 or a positive number"
    number = _number(value, expected)
    if number < 0:
        raise ValueError(expected)
    return number


def _fraction(value: str) -> float:
    expected = "must be a number from 0 to 1"
    number = _number(value, expected)
    if not 0 <= number <= 1:
        raise ValueError(expected)
    return number


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ValueError("must be true or false")
    return lowered in ("true", "1", "yes", "on")


def _partitioner(value: str) -> str:
    if value not in ("murmur2", "crc32"):
        raise ValueError("must be murmur2 (Java clients) or crc32 (librdkafka's default)")
    return value


def _topic(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value):
        raise ValueError("must be a Kafka topic name (letters, digits, '.', '_', '-')")
    return value


def _nonempty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def check_account_key(value: str) -> Secret:
    """The account key as a Secret, or ConfigError describing its shape (never its value)."""
    try:
        return _account_key(value)
    except ValueError as exc:
        raise ConfigError(f"OFSYS_ACCOUNT_KEY {exc}") from None
