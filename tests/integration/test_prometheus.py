"""The proof of the ops files: a real Prometheus scrapes a real pipeline under load and
a Journey fault, and every dashboard query and alert rule is evaluated against it.

Phases (wall clock, about 45 s in all):
  1. load:     ShopTraffic with replays and bad records, Journey failing 5% of requests;
  2. fault:    Journey refuses the account key while the shop keeps producing;
  3. recovery: faults cleared, the backlog drains.
Then, through Prometheus's HTTP API: every panel target of the generated dashboard
returns data over the test's window, lag rose in the fault and fell after it, the
unauthorized alert fired in the fault (and only then), and every alert expr evaluates.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer

from pipeline.tools.broker import free_port
from pipeline.tools.producing import produce
from pipeline.tools.traffic import Encoder, ShopTraffic, encoded
from tests.prometheus_bin import binary

from .conftest import Harness, wait_for

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "ofsys-pipeline" / "files" / "dashboard.json"
ALERTS = ROOT / "helm" / "ofsys-pipeline" / "files" / "alerts.yaml"
NAMESPACE, POD = "test", "ofsys-pipeline-0"
RATE = 200  # events/s produced in the load and fault phases
PHASE_S = 15
# Grafana's $__rate_interval is max(4 x scrape interval, $__interval + scrape interval):
# with a 1 s scrape, 4 s; a little more keeps several samples in every window.
GRAFANA_VARIABLES = {
    "namespace": NAMESPACE,
    "pod": POD,
    "__rate_interval": "5s",
    "__interval": "1s",
    "__range": "60s",
}

pytestmark = pytest.mark.integration


class Prometheus:
    """A Prometheus server on a free loopback port with its own storage directory."""

    def __init__(self, workdir: Path, target_port: int, rule_file: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rule_file)],
            "scrape_configs": [
                {
                    "job_name": "ofsys-pipeline",
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{target_port}"],
                            "labels": {"namespace": NAMESPACE, "pod": POD},
                        }
                    ],
                }
            ],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}" if params else self.url + path
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 400/422: a bad query, with its error
            body = json.loads(exc.read())
        return body

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited {self.process.returncode}: {self.log()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def query(self, expr: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr)

    def query_range(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        """Evaluated every second, aligned so that the last point is at `end`."""
        start = end - math.ceil(end - start)
        body = self.get("/api/v1/query_range", query=expr, start=start, end=end, step="1s")
        assert body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def scalar_range(self, expr: str, start: float, end: float) -> list[tuple[float, float]]:
        """(time, value) of a single-series range query, [] when absent."""
        result = self.query_range(expr, start, end)
        assert len(result) <= 1, f"{expr}: more than one series"
        return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []

    def targets(self) -> str:
        """The scrape targets' health and last error, for failure messages."""
        body = self.get("/api/v1/targets")
        return "; ".join(
            f"{t['scrapeUrl']} {t['health']} {t['lastError']!r}"
            for t in body["data"]["activeTargets"]
        )

    def alerts(self) -> list[dict[str, Any]]:
        body = self.get("/api/v1/alerts")
        assert body["status"] == "success", body
        alerts: list[dict[str, Any]] = body["data"]["alerts"]
        return alerts

    def rules(self) -> list[dict[str, Any]]:
        body = self.get("/api/v1/rules")
        assert body["status"] == "success", body
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]


def shortened_rules(path: Path) -> Path:
    """A copy of alerts.yaml with every `for:` cut to 5 s. The shipped durations
    (5-15 minutes) are for production; a test cannot wait them out."""
    text = ALERTS.read_text(encoding="utf-8")
    shortened, count = re.subn(r"(?m)^(\s+for:\s*)\S+$", r"\g<1>5s", text)
    assert count == text.count("alert: "), "every alert has a for:"
    path.write_text(shortened, encoding="utf-8")
    return path


def grafana_expr(expr: str) -> str:
    """A panel query with the dashboard's variables replaced as Grafana would."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in GRAFANA_VARIABLES:
            raise AssertionError(f"unknown dashboard variable ${name} in {expr}")
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def has_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(v)) for series in result for _, v in series["values"])


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[int], Prometheus]]:
    started: list[Prometheus] = []

    def start(target_port: int) -> Prometheus:
        server = Prometheus(tmp_path, target_port, shortened_rules(tmp_path / "alerts.yaml"))
        started.append(server)
        wait_for(server.ready, 30, "prometheus to be ready")
        return server

    yield start
    for server in started:
        server.stop()


class Shop(threading.Thread):
    """Produces `count` ShopTraffic records at RATE per second, then stops by itself."""

    def __init__(self, harness: Harness, count: int):
        super().__init__(name="shop", daemon=True)
        self._producer = Producer(
            {"bootstrap.servers": harness.broker.bootstrap, "linger.ms": 5, "acks": "all"}
        )
        traffic = ShopTraffic(seed=7, visitors=300, duplicate_rate=0.05, invalid_rate=0.02)
        self._records = encoded(traffic, Encoder(harness.family))
        self._topic = harness.topic
        self._count = count
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.sent = produce(self._producer, self._topic, self._records, self._count, RATE)
        except BaseException as exc:
            self.error = exc


def test_dashboard_and_alerts_against_a_real_prometheus(
    harness: Harness, prometheus_for: Callable[[int], Prometheus]
) -> None:
    journey = harness.journey
    pipeline = harness.start()
    prom = prometheus_for(pipeline.metrics_port)
    wait_for(
        lambda: prom.query('up{job="ofsys-pipeline"} == 1')["data"]["result"],
        15,
        "the first scrape of the pipeline",
    )
    started = time.time()
    journey.set_faults(error_rate=0.05, seed=3)  # some retries, so their panel has data
    shop = Shop(harness, 2 * PHASE_S * RATE)
    shop.start()

    # 1. load
    time.sleep(PHASE_S)
    # 2. fault: Journey refuses the key while the shop keeps producing
    fault_started = time.time()
    journey.set_faults(unauthorized=True)
    fired_at: float | None = None
    while time.time() < fault_started + PHASE_S:
        if fired_at is None and any(
            a["labels"]["alertname"] == "OfsysPipelineJourneyUnauthorized"
            and a["state"] == "firing"
            for a in prom.alerts()
        ):
            fired_at = time.time()
        time.sleep(0.5)
    shop.join(PHASE_S)
    assert shop.error is None, shop.error
    assert not shop.is_alive(), "the shop did not finish producing"
    # 3. recovery
    fault_ended = time.time()
    journey.set_faults()

    def diagnosis() -> str:
        return (
            f"pipeline exit code: {pipeline.process.poll()}; targets: {prom.targets()}\n"
            f"pipeline log (tail):\n{pipeline.log()[-4000:]}"
        )

    assert fired_at is not None, (
        f"OfsysPipelineJourneyUnauthorized never fired in the fault\n{diagnosis()}"
    )

    sel = f'{{namespace="{NAMESPACE}", pod="{POD}"}}'
    lag = f"sum(ofsys_consumer_lag_messages{sel})"
    peak = max(v for _, v in prom.scalar_range(lag, fault_started, fault_ended))
    assert peak >= PHASE_S * RATE / 3, f"lag did not rise in the fault (peak {peak})\n{diagnosis()}"

    def drained() -> bool:
        now = prom.scalar_range(lag, time.time() - 2, time.time())
        return bool(now) and now[-1][1] < peak / 10

    wait_for(drained, 30, "the backlog to drain after the fault")
    wait_for(
        lambda: (
            not any(
                a["labels"]["alertname"] == "OfsysPipelineJourneyUnauthorized"
                for a in prom.alerts()
            )
        ),
        15,
        "the unauthorized alert to resolve",
    )
    ended = time.time()

    # Lag: low in the load phase, up in the fault, down after it.
    series = prom.scalar_range(lag, started, ended)
    before = [v for t, v in series if t < fault_started]
    during = [v for t, v in series if fault_started <= t <= fault_ended]
    after = [v for t, v in series if t > fault_ended]
    assert before and during and after, series
    assert max(before) < peak / 2, f"lag before the fault {max(before)} vs peak {peak}"
    assert during[-1] > during[0], f"lag did not rise during the fault: {during}"
    assert after[-1] < peak / 10, f"lag did not fall after the fault: {after}"

    # The unauthorized alert fired in the fault window, never before it.
    firing = prom.scalar_range(
        'count(ALERTS{alertname="OfsysPipelineJourneyUnauthorized", alertstate="firing"})',
        started,
        ended,
    )
    assert firing, "ALERTS has no firing OfsysPipelineJourneyUnauthorized"
    assert fault_started < firing[0][0] < fault_ended, (firing[0][0] - fault_started, firing)

    # Every panel target of the generated dashboard returns data over the test window.
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    empty = []
    checked = 0
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            result = prom.query_range(grafana_expr(target["expr"]), started, ended)
            checked += 1
            if not has_data(result):
                empty.append(f"{panel['title']}: {target['expr']}")
    assert checked >= 20
    assert not empty, "panels without data:\n" + "\n".join(empty)

    # The namespace and pod variables (label_values on ofsys_build_info) list the target.
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        found = re.fullmatch(r"label_values\((.+), (\w+)\)", grafana_expr(variable["query"]))
        assert found, variable["query"]
        match, label = found.groups()
        body = prom.get(f"/api/v1/label/{label}/values", **{"match[]": match})
        assert body["status"] == "success", body
        assert body["data"] == [GRAFANA_VARIABLES[label]], (variable["query"], body)

    # ... and the ones the load was shaped for saw real (non-zero) traffic.
    for expr in (
        f'sum(increase(ofsys_events_total{{outcome="duplicate", pod="{POD}"}}[1h]))',
        f'sum(increase(ofsys_events_total{{outcome="dead_lettered", pod="{POD}"}}[1h]))',
        f"sum(increase(ofsys_dead_letters_total{sel}[1h]))",
        f"sum(increase(ofsys_missing_fields_total{sel}[1h]))",
        f"sum(increase(ofsys_journey_retries_total{sel}[1h]))",
        f'sum(increase(ofsys_journey_batches_total{{result="unauthorized", pod="{POD}"}}[1h]))',
        f"sum(increase(ofsys_commands_delivered_total{sel}[1h]))",
    ):
        body = prom.query(expr)
        assert body["status"] == "success", body
        values = [float(s["value"][1]) for s in body["data"]["result"]]
        assert values and values[0] > 0, f"{expr}: {values}"

    # Every alert rule evaluates, directly and in Prometheus's own rule manager.
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    for rule in rules:
        body = prom.query(rule["expr"])
        assert body["status"] == "success", f"{rule['alert']}: {body}"
    loaded = {r["name"]: r for r in prom.rules()}
    assert set(loaded) == {r["alert"] for r in rules}
    assert all(r["health"] == "ok" for r in loaded.values()), loaded

    assert pipeline.terminate() == 0, pipeline.log()
