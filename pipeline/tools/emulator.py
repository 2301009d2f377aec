"""Journey emulator: a test double of the real Ofsys Journey endpoint.

It speaks the same HTTP contract (docs/journey-contract.md) over real HTTP, so the
demo and the tests exercise the pipeline's actual client: authentication, per-command
validation, idempotency by batch and by command id, and injectable faults (transient
statuses, Retry-After, latency, revoked key, rejected commands). It records what it
accepted in a ledger that tests read back over HTTP (GET /ledger) or in process, and
serves its counters to Prometheus (GET /metrics, journey_emulator_*_total). For the
bench it notes when each request arrived (before any injected latency): GET /receipts
gives the first request's time and, per accepted command, its `ts` and receipt time
(wall clock, ms), from which the bench takes end-to-end latency.

Like Journey, it keeps the first copy of a command id. A later copy with the same
content is a plain duplicate (`duplicates_received`); a later copy whose content differs
(any of id, ts, cartId, email, call, args) is a contract violation: the pipeline must
never send one id with two contents. It is counted in `conflicts`, and the first
`MAX_CONFLICT_EXAMPLES` are kept in `conflict_examples` as {id, first, then}.
Both kinds are answered as duplicates on the wire, as Journey would.
"""

from __future__ import annotations

import contextlib
import hmac
import random
import signal
import socket
import threading
import time
from dataclasses import asdict
from types import FrameType
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest

from .. import logs
from .emulator_contract import (
    _COUNTERS,
    INGEST_PATH,
    _canonical,
    _command_error,
    _Faults,
    _parse_faults,
)
from .emulator_http import _Collector, _Response, _Server

log = logs.get("emulator")
MAX_CONFLICT_EXAMPLES = 20
_UNAUTHORIZED = orjson.dumps({"error": "unauthorized"})


class JourneyEmulator:
    """In-process Journey endpoint; see the module docstring. Start it, point the client at url."""

    def __init__(self, *, account_key: str, host: str = "127.0.0.1", port: int = 0) -> None:
        if not account_key:
            raise ValueError("account_key must not be empty")
        self._auth = f"Bearer {account_key}".encode()
        self._lock = threading.Lock()
        self._commands: list[Any] = []
        self._received: list[float] = []  # receipt time (ms) of each command in _commands
        self._first_request_ms: float | None = None
        # id -> the first copy recorded (the object in _commands, so no extra memory); a
        # repeated id is compared by canonical bytes, so new ids cost no serialisation.
        self._firsts: dict[str, dict[str, Any]] = {}
        self._conflict_examples: list[dict[str, Any]] = []
        self._batches: dict[str, bytes] = {}
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._faults = _Faults()
        self._rng = random.Random()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(self))
        self._server = _Server((host, port), self)  # binds now, so url is known before start
        self._thread: threading.Thread | None = None
        self._started = False
        self._closed = False

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        return self.base_url + INGEST_PATH

    def start(self) -> JourneyEmulator:
        """Serve in a background daemon thread."""
        self._mark_started()
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="journey-emulator", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until stop() or KeyboardInterrupt."""
        self._mark_started()
        try:
            self._server.serve_forever(0.05)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving and cut open keep-alive connections; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._started:
            self._server.shutdown()
        with self._server.connections_lock:
            for conn in list(self._server.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _mark_started(self) -> None:
        if self._started or self._closed:
            raise RuntimeError("a JourneyEmulator can be started once")
        self._started = True

    def __enter__(self) -> JourneyEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def ledger(self) -> dict[str, Any]:
        """Snapshot of what was accepted and the counters (the GET /ledger document)."""
        with self._lock:
            snapshot: dict[str, Any] = {"commands": list(self._commands)}
            snapshot["accepted"] = len(self._commands)
            snapshot.update(self._counts)
            snapshot["conflict_examples"] = list(self._conflict_examples)
        return snapshot

    def receipts(self) -> dict[str, Any]:
        """The first request's arrival and [ts, receipt] (ms) per accepted command (the
        GET /receipts document): what the bench needs without the commands themselves."""
        with self._lock:
            pairs = [[c["ts"], r] for c, r in zip(self._commands, self._received, strict=True)]
            return {"first_request_ms": self._first_request_ms, "receipts": pairs}

    def counters(self) -> dict[str, int]:
        """The ledger's counters alone (accepted included), without copying the commands."""
        with self._lock:
            return {"accepted": len(self._commands), **self._counts}

    def metrics(self) -> bytes:
        """The counters in Prometheus text format (the GET /metrics document)."""
        return generate_latest(self._registry)

    def faults(self) -> dict[str, Any]:
        """Current fault settings (the GET /faults document); fail_next counts down."""
        with self._lock:
            return asdict(self._faults)

    def set_faults(self, **faults: Any) -> None:
        """Replace all fault settings (omitted ones reset to off); ValueError if invalid."""
        parsed = _parse_faults(faults)
        with self._lock:
            self._faults = parsed
            if parsed.seed is not None:
                self._rng = random.Random(parsed.seed)

    def reset(self) -> None:
        """Forget everything: ledger, counters, conflicts, remembered batches and faults."""
        with self._lock:
            self._commands.clear()
            self._received.clear()
            self._first_request_ms = None
            self._firsts.clear()
            self._conflict_examples.clear()
            self._batches.clear()
            self._counts.update(dict.fromkeys(_COUNTERS, 0))  # in place: _ingest holds a ref
            self._faults = _Faults()
            self._rng = random.Random()

    def _reject(self, doc: dict[str, Any]) -> _Response:
        with self._lock:
            self._counts["rejected"] += 1
        return 400, orjson.dumps(doc), {}

    def _ingest(self, auth: str | None, idempotency_key: str | None, body: bytes) -> _Response:
        """One POST /v1/journey: faults, then auth, then validation, then idempotent record."""
        counts = self._counts
        received = time.time() * 1000
        with self._lock:
            if self._first_request_ms is None:
                self._first_request_ms = received
            counts["requests"] += 1
            f = self._faults
            fault: int | None = None
            if f.unauthorized:
                fault = 401
            elif f.fail_next > 0:
                f.fail_next -= 1
                fault = f.status
            elif f.error_rate > 0 and self._rng.random() < f.error_rate:
                fault = f.status
            if fault is not None:
                counts["faults_injected"] += 1
            delay, retry_after = f.latency_ms / 1000, f.retry_after
        if delay > 0:
            time.sleep(delay)
        if fault == 401:
            return 401, _UNAUTHORIZED, {}
        if fault is not None:
            headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
            return fault, orjson.dumps({"error": "injected fault"}), headers
        if auth is None or not hmac.compare_digest(auth.encode("utf-8", "replace"), self._auth):
            return 401, _UNAUTHORIZED, {}
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._reject({"error": "body is not valid JSON"})
        if type(doc) is not dict:
            return self._reject({"error": "body must be a JSON object"})
        batch_id, commands = doc.get("batchId"), doc.get("commands")
        if type(batch_id) is not str or not batch_id:
            return self._reject({"error": "batchId must be a non-empty string"})
        if type(commands) is not list or not commands:
            return self._reject({"error": "commands must be a non-empty list"})
        if idempotency_key != batch_id:
            return self._reject({"error": "Idempotency-Key header must equal batchId"})
        errors = []
        for cmd in commands:
            message = _command_error(cmd)
            if message is not None:
                cid = cmd.get("id") if type(cmd) is dict else None
                errors.append({"id": cid, "message": message})
        if errors:
            return self._reject({"errors": errors})
        with self._lock:
            stored = self._batches.get(batch_id)
            if stored is not None:
                counts["duplicate_batches"] += 1
                return 200, stored, {}
            if self._faults.reject_ids:
                reject_ids = set(self._faults.reject_ids)
                named = [c["id"] for c in commands if c["id"] in reject_ids]
                if named:
                    counts["faults_injected"] += 1
                    errs = [{"id": i, "message": "rejected by emulator"} for i in named]
                    return 422, orjson.dumps({"errors": errs}), {}
            firsts, ledger, new, conflicts = self._firsts, self._commands, 0, 0
            for cmd in commands:
                first = firsts.get(cmd["id"])
                if first is None:
                    firsts[cmd["id"]] = cmd
                    ledger.append(cmd)
                    self._received.append(received)
                    new += 1
                elif _canonical(first) != _canonical(cmd):
                    conflicts += 1
                    if len(self._conflict_examples) < MAX_CONFLICT_EXAMPLES:
                        example = {"id": cmd["id"], "first": first, "then": cmd}
                        self._conflict_examples.append(example)
            dup = len(commands) - new  # Journey answers a conflicting copy as a duplicate
            counts["duplicates_received"] += dup - conflicts
            counts["conflicts"] += conflicts
            counts["batches"] += 1
            answer = self._batches[batch_id] = orjson.dumps({"accepted": new, "duplicates": dup})
        return 200, answer, {}


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve(*, account_key: str, host: str, port: int) -> None:
    """Run the emulator in the foreground (the CLI's demo mode) until SIGINT or SIGTERM."""
    emulator = JourneyEmulator(account_key=account_key, host=host, port=port)
    log.info("journey emulator listening", extra={"url": emulator.url})
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        emulator.serve_forever()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
