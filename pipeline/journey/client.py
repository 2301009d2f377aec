"""The seam to Journey: the `Transport` protocol and its HTTP implementation.

A transport makes one request per batch and says how it went in types: it returns
when Journey accepted the batch (2xx) and raises a DeliveryError otherwise, with the
status already classified (errors.py). It never retries, waits or dead-letters: that
is the response table's job (delivery.py), so the table can be driven by any
transport, a fake one in the tests.

`JourneyClient` is the transport of the contract (docs/journey-contract.md): POST the
body with the account key as a bearer token and the batch id as Idempotency-Key,
over pooled keep-alive connections. Invariant: every answer maps to exactly one
outcome, and none of them drops the batch (statuses outside the contract are
transient); the account key never appears in an error message.
"""

from __future__ import annotations

import email.utils
import time
from typing import Protocol

import orjson
import urllib3

from ..config import Secret
from ..errors import (
    RejectedCommandsError,
    RetryReason,
    TransientDeliveryError,
    UnauthorizedError,
)
from .batch import Batch

_TRANSIENT: dict[int, RetryReason] = {408: "unavailable", 425: "unavailable", 429: "throttled"}


class Transport(Protocol):
    """Sends one batch to Journey.

    `send` returns when the batch was accepted and otherwise raises
    TransientDeliveryError (retry the same batch), RejectedCommandsError (some commands
    are bad) or UnauthorizedError (the key is refused). `close` releases connections.
    """

    def send(self, batch: Batch) -> None: ...

    def close(self) -> None: ...


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _rejections(body: bytes) -> dict[str, str]:
    """Command id -> message from a 400/422 body. Entries without an id are skipped; a
    malformed body or entry names none ({}), so the delivery halves the batch instead."""
    try:
        errors = orjson.loads(body).get("errors") or []
        return {str(e["id"]): str(e.get("message", "rejected")) for e in errors if "id" in e}
    except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError):
        return {}


class JourneyClient:
    """One Journey endpoint over pooled keep-alive connections (a `Transport`)."""

    def __init__(
        self, url: str, account_key: Secret, timeout_s: float, *, connections: int = 1
    ) -> None:
        """`connections`: kept alive at once, one per request in flight (the worker's
        lanes); fewer would close and reopen one per request."""
        manager = urllib3.PoolManager(
            num_pools=1,
            maxsize=max(connections, 1),
            retries=False,  # no retry and no redirect followed: the response table decides
            timeout=urllib3.Timeout(connect=min(timeout_s, 5.0), read=timeout_s),
        )
        # the endpoint's own pool, asked directly: a request no longer parses the URL
        # and looks up its pool (PoolManager.urlopen), as it did once per batch
        self._pool = manager.connection_from_url(url)
        self._target = urllib3.util.parse_url(url).request_uri
        self._headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {account_key.reveal()}",
        }

    def send(self, batch: Batch) -> None:
        headers = {**self._headers, "Idempotency-Key": batch.batch_id}
        try:
            response = self._pool.urlopen(
                "POST",
                self._target,
                body=batch.body,
                headers=headers,
                retries=False,
                redirect=False,
                assert_same_host=False,
            )
        except urllib3.exceptions.NewConnectionError as exc:  # a ConnectTimeoutError subclass
            raise TransientDeliveryError(
                f"Journey unreachable: {type(exc).__name__}", reason="connection", retry_after=None
            ) from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise TransientDeliveryError(
                "Journey timed out", reason="timeout", retry_after=None
            ) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise TransientDeliveryError(
                f"Journey unreachable: {type(exc).__name__}", reason="connection", retry_after=None
            ) from exc
        status = response.status
        if 200 <= status < 300:
            return
        if status in (400, 422):
            raise RejectedCommandsError(
                f"Journey rejected the batch ({status})",
                status=status,
                errors=_rejections(response.data),
            )
        if status in (401, 403):
            raise UnauthorizedError(f"Journey refused the account key ({status})", status=status)
        # Statuses outside the contract are retried too: dropping is never the answer.
        reason = _TRANSIENT.get(status) or ("server_error" if status >= 500 else "unavailable")
        raise TransientDeliveryError(
            f"Journey answered {status}",
            reason=reason,
            status=status,
            retry_after=retry_after(response.headers.get("Retry-After")),
        )

    def close(self) -> None:
        self._pool.close()
