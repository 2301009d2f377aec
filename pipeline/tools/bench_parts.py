"""Shared parts of the benchmarks (`bench` and `bench --backlog`): the Journey emulator
in its own process (optionally delaying every response), the 10-90 % steady rate, the
consume + decode ceiling, VmRSS sampling of a process and its loop thread's CPU, from /proc."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from ..errors import DecodeError
from ..source.decode import SingleObjectDecoder
from ..source.schemas import load_family
from .broker import wait_listening
from .demo import DEMO_KEY

TOPIC = "bench-events"
SAMPLE_S = 0.2  # VmRSS sampling period


def _start_emulator(port: int, latency_ms: float = 0.0) -> subprocess.Popen[bytes]:
    """The Journey emulator as its own process; with `latency_ms`, every response to
    POST /v1/journey waits that long (its latency fault), as a remote Journey would."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "journey-emulator",
            "--port",
            str(port),
            "--account-key",
            DEMO_KEY,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(process, port, "the Journey emulator")
    if latency_ms:
        emulator_json(f"http://127.0.0.1:{port}/faults", {"latency_ms": latency_ms})
    return process


def stop_emulator(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM; SIGKILL after 120 s (freeing millions of ledgered commands takes a while)."""
    process.terminate()
    try:
        process.wait(120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def emulator_json(url: str, body: dict[str, Any] | None = None) -> Any:
    """GET (or POST `body` to) one of the emulator's JSON endpoints."""
    data = None if body is None else orjson.dumps(body)
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=60) as response:
        return orjson.loads(response.read())


def consume_decode_ceiling(
    bootstrap: str,
    partitions: int,
    events: int,
    batch: int,
    *,
    topic: str = TOPIC,
    timeout_s: float = 600.0,
    fastavro_only: bool = True,
) -> float:
    """Events/s of consume + decode alone, from the first record read to the last. With
    fastavro (the default) it is the reference issue 12 set; with the pipeline's own
    decoder (the SiteEvent reader, see source/decode.py) it shows what the codec is worth
    on the same records, consumer and broker."""
    decoder = SingleObjectDecoder(load_family("site_event"))
    decode = decoder.record if fastavro_only else decoder  # fastavro's dicts, or the events
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-ceiling", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen = 0
    first: float | None = None
    deadline = time.monotonic() + timeout_s
    while seen < events:
        if time.monotonic() > deadline:
            consumer.close()
            raise RuntimeError(f"the ceiling read {seen}/{events} records in {timeout_s:.0f} s")
        messages = consumer.consume(batch, 1.0)
        if messages and first is None:
            first = time.perf_counter()
        for msg in messages:
            if msg.error() is None:
                with contextlib.suppress(DecodeError):  # bad records count as read
                    decode(msg.value())  # type: ignore[arg-type]
                seen += 1
    elapsed = time.perf_counter() - (first or 0.0)
    consumer.close()
    return events / max(elapsed, 1e-9)


def loop_thread_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process's first thread, where `ofsys-pipeline
    run` runs its loop, from /proc/<pid>/task/<pid>/stat; 0.0 once it is gone. Beside
    the process's own CPU seconds it tells the loop's share from the delivery lanes' and
    librdkafka's, which share the GIL or a core with it."""
    try:
        with open(f"/proc/{pid}/task/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # after the command's closing parenthesis: state is field 3, utime 14 and stime 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssWatch:
    """VmRSS of one process from /proc every `SAMPLE_S` on a thread: peak, when, count."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = time.monotonic()
        self.peak_kib = 0
        self.peak_at_s = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-watch", daemon=True)
        self._thread.start()

    def status_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (the kernel's own peak) in KiB; empty once the process is gone."""
        try:
            with open(f"/proc/{self.pid}/status") as status:
                lines = [line.split(":", 1) for line in status if line.startswith("Vm")]
        except OSError:
            return {}
        return {k: int(v.split()[0]) for k, v in lines if k in ("VmRSS", "VmHWM")}

    def sample(self) -> int:
        rss = self.status_kib().get("VmRSS", 0)
        if rss:
            self.samples += 1
            if rss > self.peak_kib:
                self.peak_kib, self.peak_at_s = rss, time.monotonic() - self.started
        return rss

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
