"""The operator's HTTP endpoints: /metrics, /healthz (alive), /readyz (worth routing to).

Served from a daemon thread so probes answer even while the loop waits on Journey.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import Metrics


class Health:
    """What /readyz judges: assigned, delivering, polling, broker answering, not
    restoring."""

    def __init__(self, poll_stale_s: float) -> None:
        self.poll_stale_s = poll_stale_s
        self.assigned = 0
        self.unauthorized = False
        self.restoring = 0
        self.broker_down_s = 0.0
        self.last_poll = time.monotonic()

    def problems(self) -> list[str]:
        problems = []
        if self.assigned == 0:
            problems.append("no partitions assigned")
        if self.unauthorized:
            problems.append("Journey refuses the account key (401/403)")
        if self.broker_down_s:
            problems.append(f"Kafka broker unreachable for {self.broker_down_s:.0f} s")
        if self.restoring:
            problems.append("restoring partition state")
        if time.monotonic() - self.last_poll > self.poll_stale_s:
            problems.append(f"no poll for more than {self.poll_stale_s:.0f} s")
        return problems


def serve(
    port: int, metrics: Metrics, health: Health, host: str = "0.0.0.0"
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif path == "/readyz":
                problems = health.problems()
                body = orjson.dumps({"ready": not problems, "problems": problems})
                self._send(503 if problems else 200, body, "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds are not news."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    # a short poll interval: shutdown() waits for it, inside the shutdown deadline
    threading.Thread(
        target=server.serve_forever, args=(0.1,), name="ofsys-http", daemon=True
    ).start()
    return server
