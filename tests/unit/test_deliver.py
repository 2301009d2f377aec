"""deliver, pure parts: the Retry-After header and the rejection body of a 400/422."""

from __future__ import annotations

import calendar
import email.utils
import time

import pytest

from pipeline.journey.delivery import _rejections, retry_after

NOW = 1764000000.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5", 5.0), ("0", 0.0), ("120", 120.0), (" 7 ", 7.0), ("007", 7.0)],
)
def test_retry_after_seconds(value: str, seconds: float) -> None:
    assert retry_after(value) == seconds
    assert retry_after(value, now=NOW) == seconds


def test_retry_after_http_date_in_the_future() -> None:
    when = calendar.timegm((2015, 10, 21, 7, 28, 0))
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=when - 30) == 30.0
    assert retry_after(email.utils.formatdate(NOW + 90, usegmt=True), now=NOW) == 90.0


def test_retry_after_http_date_with_an_offset() -> None:
    moscow = "Mon, 24 Nov 2025 19:00:45 +0300"  # 16:00:45 UTC
    assert retry_after(moscow, now=calendar.timegm((2025, 11, 24, 16, 0, 0))) == 45.0


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert retry_after(email.utils.formatdate(NOW - 600, usegmt=True), now=NOW) == 0.0


def test_retry_after_http_date_uses_the_clock_by_default() -> None:
    value = email.utils.formatdate(time.time() + 3600, usegmt=True)
    seconds = retry_after(value)
    assert seconds is not None
    assert 3590.0 < seconds <= 3600.0


@pytest.mark.parametrize(
    "value", [None, "", "   ", "soon", "-5", "1.5", "5s", "Wed, 99 Foo 2015 07:28:00 GMT"]
)
def test_retry_after_garbage_is_none(value: str | None) -> None:
    assert retry_after(value, now=NOW) is None


def test_rejections_parses_the_named_commands() -> None:
    body = (
        b'{"errors": [{"id": "e-1/0", "message": "arg \'quantity\' must be an integer"},'
        b' {"id": "c-1@2/3", "message": "unknown product"}]}'
    )
    assert _rejections(body) == {
        "e-1/0": "arg 'quantity' must be an integer",
        "c-1@2/3": "unknown product",
    }


def test_rejections_defaults_and_skips() -> None:
    body = b'{"errors": [{"id": "a"}, {"message": "no id"}, {"id": 7, "message": "m"}]}'
    assert _rejections(body) == {"a": "rejected", "7": "m"}


def test_rejections_with_a_malformed_entry_names_none() -> None:
    # all or nothing: with no names the delivery splits the batch to isolate them
    assert _rejections(b'{"errors": [{"id": "a", "message": "m"}, 3]}') == {}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"null",
        b"[]",
        b'"errors"',
        b"{}",
        b'{"errors": null}',
        b'{"errors": []}',
        b'{"errors": 5}',
        b'{"errors": {"id": "x"}}',
        b'{"errors": ["id"]}',
        b'{"error": "body is not valid JSON"}',
        b'{"errors": [{"id": "a", "message": "m"}',
    ],
)
def test_rejections_tolerates_bad_bodies(body: bytes) -> None:
    assert _rejections(body) == {}
