"""The one error hierarchy of the pipeline.

    PipelineError
    ├── ConfigError            bad configuration: one line, exit code 2
    ├── BrokerMissingError     the embedded broker binary is not installed (exit 2)
    ├── DecodeError            a record's value cannot be decoded -> dead letter
    ├── InvalidEventError      an event lacks what its call needs, or holds a value
    │                          that makes no sense -> dead letter
    ├── BrokerOutageError      Kafka unreachable past OFSYS_BROKER_OUTAGE_S: exit 1
    ├── ShutdownTimeoutError   the drain deadline passed before Journey accepted all
    └── DeliveryError          Journey did not accept a batch
        ├── TransientDeliveryError   408/425/429/5xx/timeout: retry, never drop
        ├── RejectedCommandsError    400/422: dead-letter the named commands
        └── UnauthorizedError        401/403: stop delivering, not ready

Whether an error is retried is a property of its class (`retryable`), so callers
never switch on status codes.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error the pipeline raises on purpose."""

    retryable = False


class ConfigError(PipelineError):
    """Configuration that cannot work; reported before anything is consumed."""


class BrokerMissingError(PipelineError):
    """The embedded demo broker (Tansu) is not installed."""


class DecodeError(PipelineError):
    """A record value that is not a decodable site event. `reason` is a fixed slug."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidEventError(PipelineError):
    """A decoded event that lacks a field its Journey calls need (`reason`
    "missing-field", the default) or holds a value that makes no sense ("invalid-value",
    with a `detail` saying why). `field` names the field, e.g. `cart.total`."""

    def __init__(
        self, field: str, *, reason: str = "missing-field", detail: str | None = None
    ) -> None:
        if detail is None:
            detail = f"missing {field}" if reason == "missing-field" else f"invalid {field}"
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.field = field


class BrokerOutageError(PipelineError):
    """The broker stayed unreachable longer than OFSYS_BROKER_OUTAGE_S; nothing
    uncommitted is lost (it is processed again after the restart)."""


class ShutdownTimeoutError(PipelineError):
    """Shutdown gave up on delivering; those records stay uncommitted, nothing is lost."""


class DeliveryError(PipelineError):
    """Journey did not accept a batch."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientDeliveryError(DeliveryError):
    """Worth retrying: the same batch, after `retry_after` seconds if Journey said so."""

    retryable = True

    def __init__(
        self, message: str, *, reason: str, status: int | None = None, retry_after: float | None
    ) -> None:
        super().__init__(message, status=status)
        self.reason = reason
        self.retry_after = retry_after


class RejectedCommandsError(DeliveryError):
    """Journey rejected some commands; `errors` maps command id to message (may be empty)."""

    def __init__(self, message: str, *, status: int, errors: dict[str, str]) -> None:
        super().__init__(message, status=status)
        self.errors = errors


class UnauthorizedError(DeliveryError):
    """The account key is wrong; delivering more cannot help until it is fixed."""
