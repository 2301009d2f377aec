"""`python -m pipeline run` as the benches' child process, watched from outside only:
its VmRSS from /proc, its /metrics, and its group's committed offsets on the broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from .bench_parts import SAMPLE_S, RssWatch
from .broker import free_port
from .demo import DEMO_KEY

COMMITTED_POLL_S = 0.1


def scrape(url: str) -> dict[str, float]:
    """Every sample of a Prometheus endpoint, summed by sample name (over labels)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + float(sample.value)
    return sums


CHILD_PREFIX = "OFSYS_BENCH_CHILD_"
# OFSYS_BENCH_PYSPY=<file>: `py-spy record --gil` (py-spy on PATH) samples the child from
# outside for OFSYS_BENCH_PYSPY_S seconds (20) and writes the stacks of the thread
# holding the GIL there, collapsed
PROFILE_ENV = "OFSYS_BENCH_PYSPY"


def child_env(
    bootstrap: str, topic: str, group: str, journey_url: str, port: int, *, changelog: bool
) -> dict[str, str]:
    """The environment without inherited OFSYS_ settings, plus the run's own: the
    production defaults except a short session timeout, as the integration tests. To
    measure another setting, OFSYS_BENCH_CHILD_<NAME>=<value> in the bench's environment
    reaches the child as OFSYS_<NAME>=<value> (e.g. OFSYS_BENCH_CHILD_JOURNEY_MAX_IN_FLIGHT=1)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFSYS_")}
    env.update(
        {
            "OFSYS_" + k.removeprefix(CHILD_PREFIX): v
            for k, v in os.environ.items()
            if k.startswith(CHILD_PREFIX)
        }
    )
    env.update(
        {
            "OFSYS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "OFSYS_TOPIC": topic,
            "OFSYS_GROUP_ID": group,
            "OFSYS_JOURNEY_URL": journey_url,
            "OFSYS_ACCOUNT_KEY": DEMO_KEY,
            "OFSYS_METRICS_PORT": str(port),
            "OFSYS_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "OFSYS_CHANGELOG": str(changelog).lower(),
        }
    )
    return env


class PipelineProcess:
    """One `python -m pipeline run` child: start, watch, stop (SIGTERM, as Kubernetes)."""

    def __init__(
        self, bootstrap: str, topic: str, group: str, journey_url: str, *, changelog: bool = True
    ) -> None:
        self.topic, self.group = topic, group
        port = free_port()
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        self.admin = AdminClient({"bootstrap.servers": bootstrap, "log.connection.close": False})
        self._log = tempfile.NamedTemporaryFile(prefix="ofsys-bench-", suffix=".log", delete=False)  # noqa: SIM115
        self.started = time.monotonic()
        # -P: the child imports the package this bench imports (the installed build,
        # compiled or not), never a `pipeline/` source tree in the working directory
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "pipeline", "run"],
            env=child_env(bootstrap, topic, group, journey_url, port, changelog=changelog),
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self.rss = RssWatch(self.process.pid)
        self.profiler: subprocess.Popen[bytes] | None = None
        if profile := os.environ.get(PROFILE_ENV):  # sampled from outside by py-spy
            seconds = os.environ.get(PROFILE_ENV + "_S", "20")
            spy = ("py-spy", "record", "--gil", "--format", "raw", "-o", profile)
            self.profiler = subprocess.Popen(
                [*spy, "--duration", seconds, "--pid", str(self.process.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def check(self, deadline: float, waiting_for: str) -> None:
        """RuntimeError (with the log's tail) if the child died or the deadline passed."""
        if self.process.poll() is not None:
            raise RuntimeError(f"the pipeline exited with {self.process.returncode}: {self.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {waiting_for}: {self.tail()}")

    def metrics(self) -> dict[str, float]:
        return scrape(self.metrics_url)

    def wait_metric(self, name: str, at_least: float, deadline: float) -> dict[str, float]:
        """Poll /metrics until `name` >= `at_least`; the scrape that showed it."""
        while True:
            self.check(deadline, f"{name} >= {at_least}")
            try:
                sample = self.metrics()
                if sample.get(name, 0.0) >= at_least:
                    return sample
            except OSError:  # not serving yet
                pass
            time.sleep(SAMPLE_S)

    def committed(self, partitions: int) -> dict[int, int]:
        """The group's committed offsets ({} when the broker did not answer in time)."""
        request = ConsumerGroupTopicPartitions(
            self.group, [TopicPartition(self.topic, p) for p in range(partitions)]
        )
        try:
            result = self.admin.list_consumer_group_offsets([request])[self.group].result(10)
        except Exception:  # the broker may be busy: the caller polls again
            return {}
        return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}

    def wait_committed(self, ends: dict[int, int], partitions: int, deadline: float) -> float:
        """Poll until the committed offsets cover every end; the wall-clock time (s)."""
        while True:
            self.check(deadline, f"commits covering {sum(ends.values())} records")
            offsets = self.committed(partitions)
            if all(offsets.get(p, -1) >= end for p, end in ends.items() if end > 0):
                return time.time()
            time.sleep(COMMITTED_POLL_S)

    def stop(self) -> int | None:
        """SIGTERM (the pipeline drains and leaves the group), SIGKILL after 60 s; the
        exit code (None if killed). Removes the log."""
        self.rss.stop()
        if self.profiler is not None:  # it writes its file when its duration is over
            self.profiler.wait(120)
        process = self.process
        code: int | None = process.returncode
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
                code = None
        else:
            code = process.returncode
        self._log.close()
        os.unlink(self._log.name)
        return code

    def tail(self) -> str:
        self._log.flush()
        with open(self._log.name, "rb") as read:
            return read.read()[-2000:].decode(errors="replace")

    def __enter__(self) -> PipelineProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._log.closed:
            self.stop()
