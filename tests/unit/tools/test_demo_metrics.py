"""The demo serves the pipeline's /metrics like `run` does, on the asked port or, when
that is taken, on a free one (its URL is printed either way)."""

from __future__ import annotations

import socket
import urllib.request

from pipeline.metrics import Metrics
from pipeline.server import Health
from pipeline.tools.demo import _serve_metrics


def test_the_demo_serves_metrics_on_a_free_port_when_its_own_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = _serve_metrics(port, Metrics(), Health(poll_stale_s=30))
        try:
            served = server.server_address[1]
            assert served not in (port, 0)
            url = f"http://127.0.0.1:{served}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                assert b"ofsys_events_total" in response.read()
        finally:
            server.shutdown()
            server.server_close()
