"""The control topic: forget requests (GDPR erasure), written and applied.

`<topic>.control` has the input's partition count and the group consumes it beside the
input and the repartition topic, so the range assignor gives its partition *p* to the
member holding partition *p*'s state. A request names a cart by its id (keyed by it,
on the partition the producers' partitioner gives it: where the cart's state is) or an
e-mail address by its SHA-256 only (one request per partition: a shopper's carts lie
wherever their ids hash to, and a cartless visitor's state wherever the producer put
their events). `Control` takes the requests out of each polled batch and applies them
(`PartitionState.forget`); the tombstones and the request's offset go into the window
being filled, so they are committed together and a request read again after a crash
is applied again (erasing is idempotent). A partition replaying to its seal marks
applies its requests once the replay is over, so a replayed record cannot bring back
what was erased. Invariant: an address is never written to the topic or to a log.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import orjson

from .. import logs
from ..metrics import Metrics
from ..state.partition import PartitionState
from .checkpoint import Checkpoint

log = logs.get("forget")
VERSION = 1

Request = tuple[bytes, bytes, int]  # key, value, partition


def cart_requests(
    cart_id: str, partitions: int, partition_of: Callable[[bytes, int], int], now_ms: int
) -> list[Request]:
    """The one request that erases a cart: keyed by its id, on its partition."""
    key = cart_id.encode()
    value = orjson.dumps({"v": VERSION, "cart": cart_id, "requested_ms": now_ms})
    return [(key, value, partition_of(key, partitions))]


def email_requests(email_sha256: str, partitions: int, now_ms: int) -> list[Request]:
    """The requests that erase an address (named by its hash): one per partition."""
    value = orjson.dumps({"v": VERSION, "email_sha256": email_sha256, "requested_ms": now_ms})
    return [(email_sha256.encode(), value, p) for p in range(partitions)]


def subject(request: dict[str, Any]) -> str:
    """What names the shopper in logs: a hash, never an id or an address."""
    if "email_sha256" in request:
        return str(request["email_sha256"])[:16]
    return hashlib.sha256(str(request["cart"]).encode()).hexdigest()[:16]


class Control:
    """Forget requests taken out of the polled records and applied to the partitions'
    state; those of a replaying partition wait until its replay is over."""

    def __init__(
        self,
        topic: str,
        *,
        states: dict[int, PartitionState],
        checkpoint: Checkpoint,
        replaying: Callable[[int], bool],
        metrics: Metrics,
        changelog: bool,
    ) -> None:
        self.topic = topic
        self._states = states
        self._checkpoint = checkpoint
        self._replaying = replaying
        self._metrics = metrics
        self._changelog = changelog
        self.pending: list[Any] = []

    def take(self, records: list[Any]) -> list[Any]:
        """The records that are not forget requests; the requests are applied (or wait)."""
        if not records and not self.pending:
            return records
        topic = self.topic
        requests = [msg for msg in records if msg.topic() == topic]
        if requests:
            self.pending += requests
            records = [msg for msg in records if msg.topic() != topic]
        if self.pending:
            self._apply()
        return records

    def _apply(self) -> None:
        waiting = []
        for msg in self.pending:
            partition = msg.partition()
            if partition not in self._states or msg.error() is not None:
                continue  # not ours any more: the next owner reads it again
            if self._replaying(partition):
                waiting.append(msg)
                continue
            self._forget(partition, msg)
        self.pending = waiting

    def _forget(self, partition: int, msg: Any) -> None:
        source = (self.topic, partition)
        window = self._checkpoint.window
        window.offsets[source] = self._checkpoint.offsets.positions[source] = msg.offset() + 1
        try:
            request = orjson.loads(msg.value() or b"null")
            cart_id, email_sha256 = request.get("cart"), request.get("email_sha256")
            if not isinstance(cart_id or email_sha256, str):
                raise ValueError("names neither a cart nor an address")
        except (ValueError, AttributeError) as exc:
            log.warning(
                "forget request not understood; skipped",
                extra={
                    "topic": self.topic,
                    "partition": partition,
                    "offset": msg.offset(),
                    "error": str(exc)[:200],
                },
            )
            return
        tombstones = self._states[partition].forget(cart_id, email_sha256)
        if self._changelog and tombstones:
            window.changelog.setdefault(partition, []).extend(tombstones)
        kind = "cart" if cart_id is not None else "email"
        self._metrics.erasures.labels(kind).inc()
        log.info(
            "shopper forgotten",
            extra={
                "topic": self.topic,
                "partition": partition,
                "offset": msg.offset(),
                "kind": kind,
                "subject_sha256": subject(request),
                "records_erased": len(tombstones),
            },
        )


def request_forget(
    admin: Any,
    producer: Any,
    *,
    email: str | None,
    cart_id: str | None,
    topic: str,
    partitioner: str,
) -> dict[str, Any]:
    """`ofsys-pipeline forget` (the CLI builds the clients): check the shopper named,
    create the control topic if need be (the input's partition count), write the
    request(s) and wait for the broker. Bad input raises ConfigError (never echoing an
    address); returns what was written, as data."""
    from confluent_kafka import KafkaException

    from ..config_values import _partitioner, _topic
    from ..errors import ConfigError, PipelineError
    from ..source.identity import email_hash, is_email
    from ..source.normalise import DEFAULT_LIMITS
    from ..source.partitioner import PARTITIONERS
    from . import topics

    for check, raw, name in (
        (_topic, topic, "--topic"),
        (_partitioner, partitioner, "--partitioner"),
    ):
        try:
            check(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} {exc}") from None
    if email is not None:
        address = email.strip().lower()
        if not is_email(address):
            raise ConfigError("--email is not an e-mail address")
    elif cart_id is None or not cart_id.strip() or len(cart_id) > DEFAULT_LIMITS.max_id_chars:
        raise ConfigError(
            f"--cart must be a cart id of 1..{DEFAULT_LIMITS.max_id_chars} characters"
        )
    count = topics.partitions(admin, topic)
    if count is None:
        raise ConfigError(f"input topic {topic} does not exist: nobody to forget")
    control = f"{topic}.control"
    topics.ensure(admin, control, count)
    now_ms = int(time.time() * 1000)
    if email is not None:
        hashed = email_hash(address)
        requests = email_requests(hashed, count, now_ms)
        request: dict[str, Any] = {"email_sha256": hashed}
    else:
        assert cart_id is not None
        requests = cart_requests(cart_id, count, PARTITIONERS[partitioner], now_ms)
        request = {"cart": cart_id}
    failed: list[str] = []
    try:
        for key, value, partition in requests:
            producer.produce(
                control,
                value,
                key,
                partition=partition,
                on_delivery=lambda err, _msg: failed.append(str(err)) if err else None,
            )
        left = producer.flush(30.0)
    except KafkaException as exc:
        raise PipelineError(f"cannot write the forget request: {exc.args[0]}") from exc
    if left or failed:
        raise PipelineError(f"the broker did not take the forget request: {failed or left}")
    return {
        "forget": "email" if email is not None else "cart",
        "subject_sha256": subject(request),
        "topic": control,
        "partitions": sorted(p for _, _, p in requests),
    }
