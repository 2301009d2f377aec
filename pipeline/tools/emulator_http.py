"""Journey emulator, HTTP side: the server, the request handler and the metrics collector.

Owns the wire only: `_Server` (tracks connections so stop() can cut them), `_Handler`
(HTTP/1.1 keep-alive routing of /v1/journey, /ledger, /receipts, /faults, /metrics,
/healthz) and
`_Collector` (the counters as Prometheus journey_emulator_*_total). All logic and state
live in pipeline.tools.emulator.JourneyEmulator.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, Metric

from .emulator_contract import _METRIC_HELP, INGEST_PATH

if TYPE_CHECKING:
    from .emulator import JourneyEmulator

_Response = tuple[int, bytes, dict[str, str]]


class _Server(ThreadingHTTPServer):
    """Tracks open connections so stop() can cut keep-alive clients off, like a crash."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], emulator: JourneyEmulator) -> None:
        super().__init__(address, _Handler)
        self.emulator = emulator
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-request are normal under test; stay quiet about them."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive I/O only; the emulator holds all the logic and state."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # header and body go out as separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: a stderr line per request would swamp the demo's logs."""

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def _handle(self) -> None:
        """Reads the whole body first (Content-Length only) so keep-alive stays in sync."""
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or "Transfer-Encoding" in self.headers:
            self.close_connection = True
            self._send((411, orjson.dumps({"error": "a Content-Length body is required"}), {}))
            return
        body = self.rfile.read(int(length)) if length != "0" else b""
        emu = self.server.emulator
        route = (self.command, self.path.split("?", 1)[0])
        if route == ("POST", INGEST_PATH):
            auth, key = self.headers.get("Authorization"), self.headers.get("Idempotency-Key")
            self._send(emu._ingest(auth, key, body))
        elif route == ("GET", "/ledger"):
            self._send((200, orjson.dumps(emu.ledger()), {}))
        elif route == ("GET", "/receipts"):
            self._send((200, orjson.dumps(emu.receipts()), {}))
        elif route == ("DELETE", "/ledger"):
            emu.reset()
            self._send((200, orjson.dumps(emu.ledger()), {}))
        elif route == ("GET", "/faults"):
            self._send((200, orjson.dumps(emu.faults()), {}))
        elif route == ("POST", "/faults"):
            try:
                raw = orjson.loads(body or b"{}")
                if type(raw) is not dict:
                    raise ValueError("faults must be a JSON object")
                emu.set_faults(**raw)
                self._send((200, orjson.dumps(emu.faults()), {}))
            except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
                self._send((400, orjson.dumps({"error": str(exc)}), {}))
        elif route == ("GET", "/metrics"):
            self._send((200, emu.metrics(), {"Content-Type": CONTENT_TYPE_LATEST}))
        elif route == ("GET", "/healthz"):
            self._send((200, b"ok", {"Content-Type": "text/plain"}))
        else:
            self._send((404, orjson.dumps({"error": "not found"}), {}))

    do_GET = do_POST = do_DELETE = _handle  # noqa: N815 - http.server's naming

    def _send(self, response: _Response) -> None:
        status, body, headers = response
        self.send_response(status)
        if "Content-Type" not in headers:
            self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Collector:
    """Reads the emulator's counters at scrape time: the hot path keeps plain ints."""

    def __init__(self, emulator: JourneyEmulator) -> None:
        self._emulator = emulator

    def collect(self) -> Iterator[Metric]:
        for name, value in self._emulator.counters().items():
            family = CounterMetricFamily(f"journey_emulator_{name}", _METRIC_HELP[name])
            family.add_metric([], value)
            yield family
