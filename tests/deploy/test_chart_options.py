"""The chart's optional kinds and pod options, rendered offline.

helm-python-sdk renders with the built-in API versions only, as `helm template` does and
as a cluster without the Prometheus Operator or KEDA would answer: `auto` must leave
their kinds out (and NOTES.txt say so), `true` must put them in.
"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from pipeline import config
from pipeline.errors import ConfigError
from tests.deploy.test_chart import (
    ACCOUNT_KEY,
    FORCED,
    KUBE_VERSION,
    Release,
    _environment,
    refused,
    render,
)

OPERATOR_KINDS = ("ServiceMonitor", "PrometheusRule")
KEDA = {"autoscaling": {"keda": {"enabled": "auto"}}}
DIGEST = "sha256:" + "0123456789abcdef" * 4


def kinds(release: Release) -> set[str]:
    return {m["kind"] for m in release.manifests}


def test_default_render_leaves_the_operators_kinds_out(chart: helm.Chart) -> None:
    release = render(chart, {})
    assert release.merged("serviceMonitor", "enabled") == "auto"
    assert not kinds(release) & {*OPERATOR_KINDS, "ScaledObject", "TriggerAuthentication"}
    assert "Left out: ServiceMonitor and PrometheusRule." in release.notes
    assert "does not serve monitoring.coreos.com/v1" in release.notes
    assert "serviceMonitor.enabled=true" in release.notes


def test_forced_values_put_them_in(chart: helm.Chart) -> None:
    release = render(chart, FORCED)
    assert kinds(release) >= set(OPERATOR_KINDS)
    assert "Left out" not in release.notes


def test_disabled_kinds_are_left_out_without_a_note(chart: helm.Chart) -> None:
    off = {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}}
    release = render(chart, off)
    assert not kinds(release) & set(OPERATOR_KINDS)
    assert "Left out" not in release.notes  # the operator's choice, nothing to explain


def test_keda_auto_without_keda_runs_fixed_replicas(chart: helm.Chart) -> None:
    release = render(chart, {**KEDA, "replicaCount": 3})
    assert not kinds(release) & {"ScaledObject", "TriggerAuthentication"}
    assert release.one("Deployment")["spec"]["replicas"] == 3
    assert "Left out: the KEDA ScaledObject." in release.notes
    assert "keda.sh/v1alpha1" in release.notes
    forced = render(chart, {"autoscaling": {"keda": {"enabled": True}}})
    assert "ScaledObject" in kinds(forced)
    assert "replicas" not in forced.one("Deployment")["spec"]


def test_enabled_takes_auto_true_or_false_only(chart: helm.Chart) -> None:
    for value in ("auto", True, False):
        chart.validate_schema(chart.merge_values({"serviceMonitor": {"enabled": value}}))
    with pytest.raises(helm.HelmValuesError, match="enabled"):
        chart.validate_schema(chart.merge_values({"prometheusRule": {"enabled": "yes"}}))


def test_runbook_base_is_a_value(chart: helm.Chart) -> None:
    base = "https://runbooks.example.com/ofsys/"
    release = render(chart, {**FORCED, "prometheusRule": {"enabled": True, "runbookBaseUrl": base}})
    rules = [r for g in release.one("PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    assert rules
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        assert url == f"https://runbooks.example.com/ofsys#{rule['alert'].lower()}"


def test_extra_env_and_env_from_follow_the_charts_own(chart: helm.Chart) -> None:
    extra_env = [
        {"name": "OFSYS_KAFKA_CLIENT_RACK", "value": "eu-west-1a"},
        {
            "name": "OFSYS_KAFKA_SSL_KEY_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "kafka-key", "key": "password"}},
        },
    ]
    extra_from = [{"secretRef": {"name": "ofsys-overrides", "optional": True}}]
    values = {
        "journey": {"accountKey": ACCOUNT_KEY},
        "extraEnv": extra_env,
        "extraEnvFrom": extra_from,
    }
    release = render(chart, values)
    env = release.container["env"]
    assert env[0]["name"] == "OFSYS_ACCOUNT_KEY"
    assert env[-2:] == extra_env
    assert release.container["envFrom"][1:] == extra_from
    kubernetes_validate.validate(release.one("Deployment"), KUBE_VERSION, strict=True)
    settings = {**release.settings, "OFSYS_ACCOUNT_KEY": ACCOUNT_KEY}
    settings["OFSYS_KAFKA_CLIENT_RACK"] = extra_env[0]["value"]
    assert config.load(settings).kafka["client.rack"] == "eu-west-1a"


def test_image_digest_pins_the_image(chart: helm.Chart) -> None:
    release = render(chart, {"image": {"digest": DIGEST, "tag": "ignored"}})
    assert release.container["image"] == f"ghcr.io/ofsys/ofsys-pipeline@{DIGEST}"
    assert render(chart, {}).container["image"] == "ghcr.io/ofsys/ofsys-pipeline:0.1.0"
    with pytest.raises(helm.HelmValuesError, match="digest"):
        chart.validate_schema(chart.merge_values({"image": {"digest": "latest"}}))


def test_topology_spread_gets_the_selector_labels(chart: helm.Chart) -> None:
    zone = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone"}
    own = {"matchLabels": {"tier": "pipeline"}}
    constraints = [
        {**zone, "whenUnsatisfiable": "ScheduleAnyway"},
        {**zone, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": own},
    ]
    release = render(chart, {"topologySpreadConstraints": constraints})
    rendered = release.pod["topologySpreadConstraints"]
    selector = release.one("Deployment")["spec"]["selector"]
    assert rendered[0] == {**constraints[0], "labelSelector": selector}
    assert rendered[1] == constraints[1]
    kubernetes_validate.validate(release.one("Deployment"), KUBE_VERSION, strict=True)
    assert "topologySpreadConstraints" not in render(chart, {}).pod
    message = refused(chart, {"topologySpreadConstraints": [{"maxSkew": 1}]})
    assert "topologyKey" in message


def _pipeline_accepts(chart: helm.Chart, level: str) -> bool:
    environment = {**_environment(render(chart, {})), "OFSYS_ACCOUNT_KEY": ACCOUNT_KEY}
    try:
        config.load({**environment, "OFSYS_LOG_LEVEL": level})
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize(
    "level",
    ["DEBUG", "debug", "Info", "warning", "ERROR", "TRACE", "warn", "CRITICAL", "", "INFO "],
)
def test_schema_takes_exactly_the_log_levels_the_pipeline_takes(
    chart: helm.Chart, level: str
) -> None:
    values: dict[str, Any] = {"pipeline": {"logLevel": level}}
    try:
        chart.validate_schema(chart.merge_values(values))
        schema_accepts = True
    except helm.HelmValuesError:
        schema_accepts = False
    assert schema_accepts == _pipeline_accepts(chart, level), level
    if schema_accepts:  # and the value reaches the pod as given
        assert render(chart, values).settings["OFSYS_LOG_LEVEL"] == level
