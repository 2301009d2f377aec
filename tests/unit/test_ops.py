"""The ops files are checked, not trusted: the generated dashboard cannot drift from its
generator, every query names a metric the pipeline declares, and the alert rules pass
`promtool check rules` and their promtool unit tests (ops/alerts_test.yaml)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops import dashboard as generator
from pipeline.metrics import Metrics
from tests.prometheus_bin import binary

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "ofsys-pipeline" / "files" / "dashboard.json"
ALERTS = ROOT / "helm" / "ofsys-pipeline" / "files" / "alerts.yaml"
ALERT_TESTS = ROOT / "ops" / "alerts_test.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"
VALUES = ROOT / "helm" / "ofsys-pipeline" / "values.yaml"
RUNBOOK_BASE = yaml.safe_load(VALUES.read_text(encoding="utf-8"))["prometheusRule"][
    "runbookBaseUrl"
]
SELECTOR = '{namespace=~"$namespace", pod=~"$pod"}'
METRIC_NAME = re.compile(r"\b((?:ofsys|process|python)_[a-z0-9_]+)")


SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "info": ("_info",),
    "gauge": ("",),
}


def declared_metric_names() -> set[str]:
    """Every series name the pipeline's registry can expose (with _total, _bucket, ...),
    including labelled metrics that have no child yet (the lag gauges, per partition)."""
    names = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_checked_in_dashboard_is_what_the_generator_writes(tmp_path: Path) -> None:
    out = tmp_path / "dashboard.json"
    subprocess.run(
        [sys.executable, "-m", "ops.dashboard", str(out)], check=True, timeout=60, cwd=ROOT
    )
    assert out.read_bytes() == DASHBOARD.read_bytes(), (
        "helm/ofsys-pipeline/files/dashboard.json is stale: run `python -m ops.dashboard`"
    )


def test_every_query_names_a_declared_metric(board: dict[str, Any]) -> None:
    declared = declared_metric_names()
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    queries += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    used = {name for query in queries for name in METRIC_NAME.findall(query)}
    assert used, "no metric found in the dashboard queries"
    assert used <= declared, f"not declared in pipeline/metrics.py: {sorted(used - declared)}"


def pipeline_metric_families() -> set[str]:
    """The names of the pipeline's own metrics (`ofsys_...`), as declared."""
    return {f.name for f in Metrics().registry.collect() if f.name.startswith("ofsys_")}


def test_every_pipeline_metric_is_on_the_dashboard(board: dict[str, Any]) -> None:
    queries = "\n".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))
    missing = [name for name in pipeline_metric_families() if name not in queries]
    assert not missing, f"metrics without a panel (add one in ops/dashboard_queries.py): {missing}"


def test_every_pipeline_metric_is_documented() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    names = pipeline_metric_families()
    documented = set(re.findall(r"^\| `(ofsys_[a-z0-9_]+)` \|", text, flags=re.MULTILINE))
    # prometheus_client names counter families without _total and info without _info
    documented |= {re.sub(r"_(total|info)$", "", name) for name in documented}
    missing = sorted(names - documented)
    assert not missing, f"metrics missing from docs/operations.md's tables: {missing}"


def test_every_alert_names_a_declared_metric(rules: list[dict[str, Any]]) -> None:
    declared = declared_metric_names()
    for rule in rules:
        used = set(METRIC_NAME.findall(rule["expr"]))
        assert used, rule["alert"]
        assert used <= declared, f"{rule['alert']}: {sorted(used - declared)}"


def test_every_panel_query_filters_namespace_and_pod(board: dict[str, Any]) -> None:
    targets = [t for p in board["panels"] for t in p.get("targets", [])]
    assert len(targets) >= 20
    for target in targets:
        expr = target["expr"]
        selectors = re.findall(r"[a-z_]+(\{[^}]*\})", expr)
        assert selectors, expr
        assert all(s == SELECTOR for s in selectors), expr
        assert len(selectors) == len(METRIC_NAME.findall(expr)), f"unfiltered metric: {expr}"


def test_dashboard_uses_the_datasource_variable_only(board: dict[str, Any]) -> None:
    assert 36 <= board["schemaVersion"] <= 41
    assert "do not edit" in board["description"]
    assert "generated by ops/dashboard.py" in board["description"].lower()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "pod"):
        assert variables[name]["type"] == "query"
        assert variables[name]["query"].startswith("label_values(ofsys_build_info")
    uids = re.findall(r'"uid":\s*"([^"]*)"', DASHBOARD.read_text(encoding="utf-8"))
    assert set(uids) == {"${datasource}", board["uid"]}, "hard-coded datasource uid"
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_dashboard_has_the_required_panels(board: dict[str, Any]) -> None:
    queries = "\n".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))
    for needle in (
        "sum by (outcome) (rate(ofsys_events_total",
        "sum by (call) (rate(ofsys_commands_delivered_total",
        "sum by (partition) (ofsys_consumer_lag_messages",
        "max by (partition) (ofsys_consumer_lag_seconds",
        "histogram_quantile(0.5, sum by (le) (rate(ofsys_end_to_end_latency_seconds_bucket",
        "histogram_quantile(0.95, sum by (le) (rate(ofsys_end_to_end_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(ofsys_end_to_end_latency_seconds_bucket",
        "histogram_quantile(0.95, sum by (le) (rate(ofsys_journey_request_duration_seconds_b",
        "sum by (result) (rate(ofsys_journey_batches_total",
        "sum by (reason) (rate(ofsys_journey_retries_total",
        "sum by (reason) (rate(ofsys_dead_letters_total",
        "rate(ofsys_missing_fields_total",
        "ofsys_state_carts",
        "ofsys_assigned_partitions",
        "ofsys_rebalances_total",
        "ofsys_backpressure",
        "ofsys_journey_unauthorized",
    ):
        assert needle in queries, needle


def test_generator_is_deterministic() -> None:
    assert generator.render() == generator.render()
    ids = [p["id"] for p in generator.dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_alerts_follow_the_conventions(rules: list[dict[str, Any]]) -> None:
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    assert set(names) >= {
        "OfsysPipelineLagGrowing",
        "OfsysPipelineLagSecondsHigh",
        "OfsysPipelineJourneyUnauthorized",
        "OfsysPipelineJourneyRetriesHigh",
        "OfsysPipelineDeadLettersHigh",
        "OfsysPipelineNotConsuming",
        "OfsysPipelineRebalanceStorm",
        "OfsysPipelineBrokerUnreachable",
    }
    headings = {
        line.lstrip("#").strip().lower()
        for line in OPERATIONS.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"OfsysPipeline(?:[A-Z][a-z0-9]+)+", name), name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        annotations = rule["annotations"]
        assert annotations["summary"], name
        assert "{{ $labels." in annotations["description"], name
        anchor = name.lower()
        # The chart's prometheusRule.runbookBaseUrl is the one place the base is set; the
        # file carries its default so plain Prometheus and promtool see the same URLs.
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#{anchor}", name
        assert anchor in headings, f"docs/operations.md has no `### {name}` runbook section"


def test_alert_tests_cover_every_alert(rules: list[dict[str, Any]]) -> None:
    doc = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    cases = [case for test in doc["tests"] for case in test["alert_rule_test"]]
    for rule in rules:
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']}: no firing case"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']}: no quiet case"


def test_promtool_check_rules() -> None:
    result = subprocess.run(
        [binary("promtool"), "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules() -> None:
    result = subprocess.run(
        [binary("promtool"), "test", "rules", str(ALERT_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
