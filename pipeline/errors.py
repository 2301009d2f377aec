"""The one error hierarchy of the pipeline, and the tables of reasons it carries.

    PipelineError                  retryable = False unless said otherwise
    ├── ConfigError                bad configuration: one line, exit code 2
    ├── BrokerMissingError         the embedded broker binary is not installed (exit 2)
    ├── DecodeError                a record's value cannot be decoded -> dead letter
    │                              (`reason`: a DeadLetterReason)
    ├── InvalidEventError          an event lacks what its call needs, or holds a value
    │                              that makes no sense -> dead letter (`reason`:
    │                              "missing-field" or "invalid-value")
    ├── BrokerOutageError          Kafka unreachable past OFSYS_BROKER_OUTAGE_S: exit 1
    ├── ShutdownTimeoutError       the drain deadline passed before Journey accepted all;
    │                              the windows stay uncommitted and are processed again
    ├── RestoreInterruptedError    stop() came while an assignment's state was restored:
    │                              none of its records was processed; the loop drains
    └── DeliveryError              Journey did not accept a batch (`status`, if it answered)
        ├── TransientDeliveryError   408/425/429/5xx/other statuses/timeout/connection:
        │                            retryable = True; retry the same batch, never drop
        │                            (`reason`: a RetryReason, `retry_after`: seconds)
        ├── RejectedCommandsError    400/422: dead-letter the named commands, re-send
        │                            the rest, or halve to isolate them (`errors`)
        └── UnauthorizedError        401/403: stop delivering, not ready; waited out,
                                     nothing dead-lettered

`retryable` says whether the same work, tried again unchanged, can succeed: only a
transient delivery failure can. Callers test the class, never status codes. (A 401/403
is waited out too, but it is not `retryable`: only fixing the key helps.)

`DEAD_LETTER_REASONS` and `RETRY_REASONS` are the one table of each kind of reason:
the code that raises or dead-letters uses these slugs, and metrics pre-creates its
`reason` label values from them (tests/unit/journey/test_commands.py checks that every
slug used in the package is in its table).
"""

from __future__ import annotations

from typing import Literal, get_args

# Why a record or command went to the dead-letter topic (header `ofsys.reason`, label
# of ofsys_dead_letters_total).
DeadLetterReason = Literal[
    "bad-framing",  # not the expected wire format (DecodeError)
    "unknown-schema",  # a schema fingerprint or registry id we do not know (DecodeError)
    "undecodable",  # the Avro payload does not decode (DecodeError)
    "too-large",  # the record is larger than OFSYS_MAX_RECORD_BYTES (DecodeError)
    "empty",  # the record has no value (DecodeError)
    "missing-field",  # an event lacks a field its calls need (InvalidEventError)
    "invalid-value",  # an event holds a value that makes no sense (InvalidEventError)
    "journey-rejected",  # Journey rejected the command (400/422)
    "repartition-refused",  # the repartition topic refused the record
]
DEAD_LETTER_REASONS: tuple[DeadLetterReason, ...] = get_args(DeadLetterReason)

# Why a Journey request is retried (label of ofsys_journey_retries_total).
RetryReason = Literal[
    "throttled",  # 429
    "server_error",  # 5xx
    "unavailable",  # 408, 425 and statuses outside the contract
    "timeout",  # no answer within OFSYS_JOURNEY_TIMEOUT_S
    "connection",  # no connection, or it broke
]
RETRY_REASONS: tuple[RetryReason, ...] = get_args(RetryReason)


class PipelineError(Exception):
    """Root of every error the pipeline raises on purpose; `retryable` is per class."""

    retryable = False


class ConfigError(PipelineError):
    """Configuration that cannot work; reported before anything is consumed."""


class BrokerMissingError(PipelineError):
    """The embedded demo broker (Tansu) is not installed."""


class DecodeError(PipelineError):
    """A record value that is not a decodable site event; `reason` is its slug."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidEventError(PipelineError):
    """A decoded event that lacks a field its Journey calls need (`reason`
    "missing-field", the default) or holds a value that makes no sense ("invalid-value",
    with a `detail` saying why). `field` names the field, e.g. `cart.total`."""

    def __init__(
        self,
        field: str,
        *,
        reason: Literal["missing-field", "invalid-value"] = "missing-field",
        detail: str | None = None,
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


class RestoreInterruptedError(PipelineError):
    """`stop()` came during a restore (inside the assignment callback): the restore is
    abandoned so that shutdown keeps its deadline; none of those partitions' records was
    processed, so nothing of them is left to commit."""


class DeliveryError(PipelineError):
    """Journey did not accept a batch; `status` is its HTTP status, None if none came."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientDeliveryError(DeliveryError):
    """Worth retrying: the same batch, after `retry_after` seconds if Journey said so
    (else after exponential backoff with full jitter); `reason` labels the retry."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        reason: RetryReason,
        status: int | None = None,
        retry_after: float | None,
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
