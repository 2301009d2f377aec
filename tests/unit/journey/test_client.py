"""client: the Retry-After header, the rejection body of a 400/422, and how
`JourneyClient.send` turns each answer into one outcome (through a fake pool, no HTTP)."""

from __future__ import annotations

import calendar
import email.utils
import time
from typing import Any

import orjson
import pytest
import urllib3

from pipeline.config import Secret
from pipeline.errors import (
    RETRY_REASONS,
    DeliveryError,
    RejectedCommandsError,
    TransientDeliveryError,
    UnauthorizedError,
)
from pipeline.journey.batch import Batch
from pipeline.journey.client import JourneyClient, _rejections, retry_after

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


KEY = "k" * 16 + "0123456789abcdef"


class FakeResponse:
    def __init__(self, status: int, data: bytes = b"", headers: dict[str, str] | None = None):
        self.status = status
        self.data = data
        self.headers = headers or {}


class FakePool:
    """Stands in for urllib3's pool of the endpoint: records requests, answers as
    scripted."""

    def __init__(self, answer: FakeResponse | Exception) -> None:
        self.answer = answer
        self.requests: list[tuple[str, str, bytes, dict[str, str]]] = []
        self.cleared = False

    def urlopen(
        self,
        method: str,
        url: str,
        *,
        body: bytes,
        headers: dict[str, str],
        retries: bool,
        redirect: bool,
        assert_same_host: bool,
    ) -> Any:
        assert (retries, redirect) == (False, False)  # the response table decides
        self.requests.append((method, url, body, headers))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def close(self) -> None:
        self.cleared = True


def sent_with(answer: FakeResponse | Exception) -> tuple[FakePool, DeliveryError | None]:
    client = JourneyClient("http://journey.test/v1/journey", Secret(KEY), timeout_s=1.0)
    pool = client._pool = FakePool(answer)  # type: ignore[assignment]
    command = {"id": "e-1/0", "ts": 1, "cartId": None, "email": None, "call": "Track"}
    batch = Batch([{**command, "args": {"f_EMail": "a@b.c"}}], [b'{"id":"e-1/0"}'])  # type: ignore[list-item]
    try:
        client.send(batch)
    except DeliveryError as exc:
        assert KEY not in str(exc)
        return pool, exc
    finally:
        client.close()
        assert pool.cleared
    return pool, None


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_send_2xx_is_accepted_with_the_contract_headers(status: int) -> None:
    pool, error = sent_with(FakeResponse(status))
    assert error is None
    [(method, url, body, headers)] = pool.requests
    assert (method, url) == ("POST", "/v1/journey")
    batch_id = orjson.loads(body)["batchId"]
    assert headers == {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {KEY}",
        "Idempotency-Key": batch_id,
    }


@pytest.mark.parametrize("status", [400, 422])
def test_send_400_422_names_the_rejected(status: int) -> None:
    body = b'{"errors": [{"id": "e-1/0", "message": "bad"}]}'
    _, error = sent_with(FakeResponse(status, body))
    assert isinstance(error, RejectedCommandsError)
    assert (error.status, error.errors, error.retryable) == (status, {"e-1/0": "bad"}, False)


def test_send_400_without_names() -> None:
    _, error = sent_with(FakeResponse(400, b"oops"))
    assert isinstance(error, RejectedCommandsError)
    assert error.errors == {}


@pytest.mark.parametrize("status", [401, 403])
def test_send_401_403_is_unauthorized(status: int) -> None:
    _, error = sent_with(FakeResponse(status))
    assert isinstance(error, UnauthorizedError)
    assert (error.status, error.retryable) == (status, False)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (408, "unavailable"),
        (425, "unavailable"),
        (429, "throttled"),
        (500, "server_error"),
        (502, "server_error"),
        (503, "server_error"),
        (504, "server_error"),
        (599, "server_error"),
        (302, "unavailable"),
        (404, "unavailable"),
        (409, "unavailable"),
        (100, "unavailable"),
    ],
)
def test_send_transient_statuses_including_those_outside_the_contract(
    status: int, reason: str
) -> None:
    _, error = sent_with(FakeResponse(status, headers={"Retry-After": "7"}))
    assert isinstance(error, TransientDeliveryError)
    assert (error.status, error.reason, error.retry_after, error.retryable) == (
        status,
        reason,
        7.0,
        True,
    )
    _, error = sent_with(FakeResponse(status))
    assert isinstance(error, TransientDeliveryError)
    assert error.retry_after is None


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"), "timeout"),  # type: ignore[arg-type]
        (urllib3.exceptions.ConnectTimeoutError(), "timeout"),
        (urllib3.exceptions.ProtocolError("Connection aborted"), "connection"),
        (urllib3.exceptions.SSLError("handshake"), "connection"),
        pytest.param(
            urllib3.exceptions.NewConnectionError(None, "refused"),  # type: ignore[arg-type]
            "connection",
        ),
    ],
)
def test_send_timeouts_and_connection_errors_are_transient(exc: Exception, reason: str) -> None:
    _, error = sent_with(exc)
    assert isinstance(error, TransientDeliveryError)
    assert (error.status, error.reason, error.retry_after) == (None, reason, None)
    assert error.__cause__ is exc
    assert reason in RETRY_REASONS


def test_the_pool_keeps_one_connection_per_request_in_flight() -> None:
    # fewer than the worker's lanes and urllib3 closes one connection per request
    client = JourneyClient("http://journey.test/v1/journey", Secret(KEY), 1.0, connections=8)
    assert (client._pool.host, client._pool.port, client._target) == (
        "journey.test",
        80,
        "/v1/journey",
    )
    assert client._pool.pool is not None and client._pool.pool.maxsize == 8
    single = JourneyClient("https://j.test:8443/v1/journey?tenant=a", Secret(KEY), 1.0)._pool
    assert single.pool is not None and single.pool.maxsize == 1
    assert (single.scheme, single.port) == ("https", 8443)
