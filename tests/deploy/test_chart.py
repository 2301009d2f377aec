"""The Helm chart, rendered by Helm's own engine and checked against Kubernetes.

Rendering, linting and values-schema validation go through helm-python-sdk (Helm's Go
SDK over a C ABI: no helm binary, no cluster). Every rendered manifest is validated with
kubernetes-validate against the Kubernetes API schemas of KUBE_VERSION; the custom
resources (ServiceMonitor, PrometheusRule, ScaledObject, TriggerAuthentication) have no
schema there, so they are skipped explicitly by kind and checked field by field below.

Scenarios: the chart's defaults, every helm/ofsys-pipeline/ci/*-values.yaml, and the
Prometheus Operator's kinds forced on. Offline, Helm knows only the built-in API versions,
so `auto` leaves the operator's and KEDA's kinds out, as on a cluster without their CRDs.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

import pipeline
from pipeline import config
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ofsys-pipeline"
KUBE_VERSION = "1.33.0"
RELEASE, NAMESPACE = "ofsys", "shop"
# Kinds from CRDs kubernetes-validate ships no schema for: checked by the tests below.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}
SASL_PASSWORD = "ci-kafka-password-Zq81"  # the one in ci/sasl-scram-tls-values.yaml
ACCOUNT_KEY = "CiAccountKey0123456789abcdefABCD"


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    return loaded


FORCED = {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "monitoring-forced": FORCED,
    **{
        path.name.removesuffix("-values.yaml"): _load(path)
        for path in sorted((CHART / "ci").glob("*-values.yaml"))
    },
}


class Release:
    """The manifests of one render, by kind and name."""

    def __init__(self, effective: dict[str, Any], rendered: dict[str, str]) -> None:
        self.effective = effective  # the values after Helm merged them with the defaults
        self.notes = rendered.pop(f"{CHART.name}/templates/NOTES.txt", "")
        self.sources: dict[tuple[str, str], str] = {}
        self.manifests: list[dict[str, Any]] = []
        for text in rendered.values():
            for document in text.split("\n---"):
                manifest = yaml.safe_load(document)
                if manifest:
                    self.manifests.append(manifest)
                    key = (manifest["kind"], manifest["metadata"]["name"])
                    self.sources[key] = document

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.manifests if m["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, found {len(found)}"
        return found[0]

    @property
    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        containers = self.pod["containers"]
        assert len(containers) == 1
        container: dict[str, Any] = containers[0]
        return container

    @property
    def settings(self) -> dict[str, str]:
        """The pipeline's ConfigMap (not the dashboard's)."""
        (configmap,) = [m for m in self.all("ConfigMap") if "OFSYS_TOPIC" in m.get("data", {})]
        data: dict[str, str] = configmap["data"]
        return data

    def pod_labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.one("Deployment")["spec"]["template"]["metadata"]["labels"]
        return labels

    def merged(self, *path: str) -> Any:
        """A value as the chart saw it: the scenario's over the chart's defaults."""
        node: Any = self.effective
        for key in path:
            node = node[key]
        return node


def render(chart: helm.Chart, values: dict[str, Any]) -> Release:
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return Release(chart.merge_values(values), rendered)


@pytest.fixture(scope="module")
def releases(chart: helm.Chart) -> dict[str, Release]:
    return {name: render(chart, values) for name, values in SCENARIOS.items()}


def refused(chart: helm.Chart, values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as caught:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return str(caught.value)


scenarios = pytest.mark.parametrize("scenario", list(SCENARIOS))


# -- the chart as a whole -------------------------------------------------------------


def test_every_ci_scenario_is_there() -> None:
    assert set(SCENARIOS) == {
        "default",
        "monitoring-forced",
        "autoscaling-keda",
        "autoscaling-hpa",
        "existing-secret",
        "sasl-scram-tls",
        "monitoring-off",
    }


def test_app_version_is_the_package_version(chart: helm.Chart) -> None:
    assert chart.metadata["apiVersion"] == "v2"
    assert chart.metadata["appVersion"] == pipeline.__version__


@scenarios
def test_lint_is_clean(scenario: str) -> None:
    report = helm.lint(
        CHART,
        SCENARIOS[scenario],
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{KUBE_VERSION}",
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert not problems, problems
    assert not report["errors"], report["errors"]


@scenarios
def test_values_pass_the_schema(chart: helm.Chart, scenario: str) -> None:
    chart.validate_schema(chart.merge_values(SCENARIOS[scenario]))


def test_schema_refuses_unknown_and_mistyped_keys(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmValuesError, match="replicaCont"):
        chart.validate_schema({"replicaCont": 2})
    with pytest.raises(helm.HelmValuesError, match="securityProtocol"):
        chart.validate_schema({"kafka": {"securityProtocol": "SASL_SCRAM"}})


@scenarios
def test_manifests_are_valid_kubernetes(releases: dict[str, Release], scenario: str) -> None:
    skipped = set()
    for manifest in releases[scenario].manifests:
        kind = (manifest["apiVersion"], manifest["kind"])
        if kind in CRD_KINDS:
            skipped.add(kind)  # no schema in kubernetes-validate; see the tests below
            continue
        try:
            kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{manifest['kind']}/{manifest['metadata']['name']}: {path}: {exc.message}")
    assert skipped <= CRD_KINDS


# -- refusals: values that cannot work fail the render with a clear message -------------


def test_more_replicas_than_partitions_is_refused(chart: helm.Chart) -> None:
    message = refused(chart, {"replicaCount": 13, "kafka": {"topicPartitions": 12}})
    assert "replicaCount (13) exceeds kafka.topicPartitions (12)" in message
    assert "sit idle" in message


@pytest.mark.parametrize("autoscaler", ["keda", "hpa"])
def test_autoscaler_max_above_partitions_is_refused(chart: helm.Chart, autoscaler: str) -> None:
    values = {
        "kafka": {"topicPartitions": 6},
        "autoscaling": {"maxReplicas": 7, autoscaler: {"enabled": True}},
    }
    assert "autoscaling.maxReplicas (7) exceeds kafka.topicPartitions (6)" in refused(chart, values)


def test_both_autoscalers_are_refused(chart: helm.Chart) -> None:
    values = {"autoscaling": {"keda": {"enabled": True}, "hpa": {"enabled": True}}}
    assert "enable at most one autoscaler" in refused(chart, values)


def test_grace_period_not_above_shutdown_timeout_is_refused(chart: helm.Chart) -> None:
    values = {"terminationGracePeriodSeconds": 25, "pipeline": {"shutdownTimeoutSeconds": 25}}
    message = refused(chart, values)
    assert "terminationGracePeriodSeconds (25) must be greater than" in message


def test_grace_period_is_derived_from_the_shutdown_timeout(chart: helm.Chart) -> None:
    """Not a second value that can drift: shutdownTimeoutSeconds + 10, rounded up."""
    for timeout, grace in ((25, 35), (7.5, 18), (60, 70)):
        release = render(chart, {"pipeline": {"shutdownTimeoutSeconds": timeout}})
        assert release.pod["terminationGracePeriodSeconds"] == grace
    release = render(chart, {"terminationGracePeriodSeconds": 90})
    assert release.pod["terminationGracePeriodSeconds"] == 90  # an explicit override


def test_malformed_account_key_is_refused_without_echo(chart: helm.Chart) -> None:
    message = refused(chart, {"journey": {"accountKey": "not-a-key-but-secret"}})
    assert "32 letters and digits (got 20 characters; value withheld)" in message
    assert "not-a-key-but-secret" not in message


def test_sasl_without_credentials_is_refused(chart: helm.Chart) -> None:
    values = {"kafka": {"securityProtocol": "SASL_SSL", "sasl": {"username": "u"}}}
    assert "set kafka.sasl.existingSecret (or kafka.sasl.password)" in refused(chart, values)


def test_secrets_in_extra_config_are_refused(chart: helm.Chart) -> None:
    values = {"kafka": {"extraConfig": {"ssl.key.password": "hunter2"}}}
    message = refused(chart, values)
    assert "secrets never go into the ConfigMap" in message
    assert "hunter2" not in message


# -- the Deployment --------------------------------------------------------------------


@scenarios
def test_probes_hit_health_endpoints_on_the_metrics_port(
    releases: dict[str, Release], scenario: str
) -> None:
    release = releases[scenario]
    container = release.container
    (port,) = container["ports"]
    assert port["name"] == "metrics"
    assert port["containerPort"] == int(release.settings["OFSYS_METRICS_PORT"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


@scenarios
def test_runs_non_root_on_a_read_only_root(releases: dict[str, Release], scenario: str) -> None:
    release = releases[scenario]
    pod, container = release.pod["securityContext"], release.container["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["runAsNonRoot"] is True
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"]: m["name"] for m in release.container["volumeMounts"]}
    volumes = {v["name"]: v for v in release.pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@scenarios
def test_grace_period_exceeds_shutdown_timeout(releases: dict[str, Release], scenario: str) -> None:
    release = releases[scenario]
    shutdown = float(release.settings["OFSYS_SHUTDOWN_TIMEOUT_S"])
    assert release.pod["terminationGracePeriodSeconds"] > shutdown


@scenarios
def test_pods_prefer_other_nodes(releases: dict[str, Release], scenario: str) -> None:
    release = releases[scenario]
    if release.merged("podAntiAffinity") == "none":
        assert "affinity" not in release.pod
        return
    (term,) = release.pod["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert selector == release.one("Deployment")["spec"]["selector"]["matchLabels"]


def test_config_changes_roll_the_pods(chart: helm.Chart, releases: dict[str, Release]) -> None:
    def checksums(release: Release) -> dict[str, str]:
        annotations = release.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
        return {k: v for k, v in annotations.items() if k.startswith("checksum/")}

    before = checksums(releases["default"])
    assert set(before) == {"checksum/config", "checksum/secret"}
    changed = checksums(render(chart, {"pipeline": {"logLevel": "DEBUG"}}))
    assert changed["checksum/config"] != before["checksum/config"]
    rekeyed = checksums(render(chart, {"journey": {"accountKey": ACCOUNT_KEY}}))
    assert rekeyed["checksum/secret"] != before["checksum/secret"]


@scenarios
def test_replicas_left_to_the_autoscaler(releases: dict[str, Release], scenario: str) -> None:
    release = releases[scenario]
    spec = release.one("Deployment")["spec"]
    autoscaled = release.all("ScaledObject") or release.all("HorizontalPodAutoscaler")
    if autoscaled:
        assert "replicas" not in spec  # an upgrade must not reset what the autoscaler chose
    else:
        assert spec["replicas"] == release.merged("replicaCount")
        assert spec["replicas"] <= release.merged("kafka", "topicPartitions")


# -- settings and secrets --------------------------------------------------------------


def _environment(release: Release) -> dict[str, str]:
    """The pod's OFSYS_* environment, with each secretKeyRef resolved to a stand-in."""
    stand_ins = {"OFSYS_ACCOUNT_KEY": ACCOUNT_KEY, "OFSYS_KAFKA_SASL_PASSWORD": "stand-in"}
    env = dict(release.settings)
    for variable in release.container.get("env", []):
        assert "secretKeyRef" in variable["valueFrom"], variable["name"]
        env[variable["name"]] = stand_ins[variable["name"]]
    return env


@scenarios
def test_the_pipeline_accepts_the_rendered_settings(
    releases: dict[str, Release], scenario: str
) -> None:
    release = releases[scenario]
    env = _environment(release)
    if "OFSYS_ACCOUNT_KEY" not in env:  # defaults: no key yet, NOTES.txt says so
        assert "no Journey account key is configured" in release.notes
        with pytest.raises(ConfigError, match="OFSYS_ACCOUNT_KEY is required"):
            config.load(env)
        env["OFSYS_ACCOUNT_KEY"] = ACCOUNT_KEY
    settings = config.load(env)  # every name known, every value parses
    assert settings.topic == release.merged("kafka", "topic")
    assert settings.shutdown_timeout_s == release.merged("pipeline", "shutdownTimeoutSeconds")
    assert settings.kafka["security.protocol"] == release.merged("kafka", "securityProtocol")


def test_every_pipeline_option_is_set_by_the_chart(chart: helm.Chart) -> None:
    """A new OFSYS_* option must reach the chart's values (with the optional ones set)."""
    values = {
        "kafka": {"dlqTopic": "events.dead", "schemaRegistryUrl": "http://registry:8081"},
        "journey": {"accountKey": ACCOUNT_KEY},
        "triggers": {"topic": "events.triggers"},
    }
    environment = _environment(render(chart, values))
    missing = [option.env for option in config.OPTIONS if option.env not in environment]
    assert not missing, f"options the chart cannot set: {missing}"


def test_kafka_security_reaches_librdkafka(releases: dict[str, Release]) -> None:
    release = releases["sasl-scram-tls"]
    kafka = config.load(_environment(release)).kafka
    assert kafka["security.protocol"] == "SASL_SSL"
    assert kafka["sasl.mechanism"] == "SCRAM-SHA-512"
    assert kafka["sasl.username"] == "ofsys-pipeline"
    assert kafka["sasl.password"] == "stand-in"  # from the Secret, not the ConfigMap
    assert kafka["session.timeout.ms"] == "45000"  # kafka.extraConfig
    mounts = {m["name"]: m for m in release.container["volumeMounts"]}
    tls = mounts["kafka-tls"]
    assert tls["readOnly"] is True
    for key, name in [("ca.crt", "ssl.ca.location"), ("tls.crt", "ssl.certificate.location")]:
        assert kafka[name] == f"{tls['mountPath']}/{key}"
    assert kafka["ssl.key.location"] == f"{tls['mountPath']}/tls.key"
    (volume,) = [v for v in release.pod["volumes"] if v["name"] == "kafka-tls"]
    assert volume["secret"]["secretName"] == "ofsys-kafka-tls"


@scenarios
def test_no_secret_value_outside_secrets(releases: dict[str, Release], scenario: str) -> None:
    release = releases[scenario]
    secrets = [SASL_PASSWORD, ACCOUNT_KEY]
    for (kind, name), source in release.sources.items():
        if kind == "Secret":
            continue
        for secret in secrets:
            assert secret not in source, f"a secret value is in {kind}/{name}"
    for configmap in release.all("ConfigMap"):
        for key, value in configmap["data"].items():
            assert "PASSWORD" not in key and "ACCOUNT_KEY" not in key
            assert all(secret not in value for secret in secrets)


def test_given_credentials_land_in_the_secret(releases: dict[str, Release]) -> None:
    release = releases["sasl-scram-tls"]
    secret = release.one("Secret")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"account-key": ACCOUNT_KEY, "kafka-sasl-password": SASL_PASSWORD}
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in release.container["env"]}
    name = secret["metadata"]["name"]
    assert refs["OFSYS_ACCOUNT_KEY"] == {"name": name, "key": "account-key"}
    assert refs["OFSYS_KAFKA_SASL_PASSWORD"] == {"name": name, "key": "kafka-sasl-password"}


def test_existing_secrets_are_referenced_not_created(releases: dict[str, Release]) -> None:
    release = releases["existing-secret"]
    assert release.all("Secret") == []
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in release.container["env"]}
    assert refs == {
        "OFSYS_ACCOUNT_KEY": {"name": "ofsys-journey", "key": "account-key"},
        "OFSYS_KAFKA_SASL_PASSWORD": {"name": "ofsys-kafka", "key": "sasl-password"},
    }


# -- monitoring ------------------------------------------------------------------------


@scenarios
def test_service_monitor_selects_the_service_and_its_port(
    releases: dict[str, Release], scenario: str
) -> None:
    release = releases[scenario]
    service = release.one("Service")
    assert service["spec"]["selector"].items() <= release.pod_labels().items()
    assert service["spec"]["ports"][0]["targetPort"] == release.container["ports"][0]["name"]
    monitors = release.all("ServiceMonitor")
    if release.merged("serviceMonitor", "enabled") is not True:  # auto is out offline
        assert monitors == []
        return
    (monitor,) = monitors
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    port_names = {port["name"] for port in service["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert port_names == {"metrics"}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


@scenarios
def test_prometheus_rule_carries_the_alert_groups(
    releases: dict[str, Release], scenario: str
) -> None:
    release = releases[scenario]
    rules = release.all("PrometheusRule")
    if release.merged("prometheusRule", "enabled") is not True:  # auto is out offline
        assert rules == []
        return
    (rule,) = rules
    assert rule["spec"]["groups"] == _load(CHART / "files" / "alerts.yaml")["groups"]


@scenarios
def test_dashboard_configmap_carries_the_dashboard(
    releases: dict[str, Release], scenario: str
) -> None:
    release = releases[scenario]
    dashboards = [
        m for m in release.all("ConfigMap") if "grafana_dashboard" in m["metadata"]["labels"]
    ]
    if not release.merged("dashboard", "enabled"):
        assert dashboards == []
        return
    (dashboard,) = dashboards
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = dashboard["data"].values()
    assert text == (CHART / "files" / "dashboard.json").read_text()
    json.loads(text)


def test_dashboard_label_is_configurable(chart: helm.Chart) -> None:
    values = {"dashboard": {"label": "grafana_dashboard_ofsys", "labelValue": "shop"}}
    release = render(chart, values)
    (dashboard,) = [
        m for m in release.all("ConfigMap") if m["metadata"]["name"].endswith("-dashboard")
    ]
    assert dashboard["metadata"]["labels"]["grafana_dashboard_ofsys"] == "shop"
    assert "grafana_dashboard" not in dashboard["metadata"]["labels"]


@scenarios
def test_disruption_budget_takes_one_pod_at_a_time(
    releases: dict[str, Release], scenario: str
) -> None:
    release = releases[scenario]
    budgets = release.all("PodDisruptionBudget")
    if not release.merged("podDisruptionBudget", "enabled"):
        assert budgets == []
        return
    (budget,) = budgets
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == release.one("Deployment")["spec"]["selector"]


# -- autoscaling -----------------------------------------------------------------------


def test_keda_scales_up_to_the_partition_count(releases: dict[str, Release]) -> None:
    release = releases["autoscaling-keda"]
    scaled = release.one("ScaledObject")
    spec = scaled["spec"]
    assert spec["maxReplicaCount"] == release.merged("kafka", "topicPartitions") == 24
    assert spec["minReplicaCount"] == 2
    assert spec["scaleTargetRef"]["name"] == release.one("Deployment")["metadata"]["name"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    settings = release.settings
    assert trigger["metadata"]["bootstrapServers"] == settings["OFSYS_KAFKA_BOOTSTRAP_SERVERS"]
    assert trigger["metadata"]["consumerGroup"] == settings["OFSYS_GROUP_ID"]
    assert trigger["metadata"]["topic"] == settings["OFSYS_TOPIC"]
    assert trigger["metadata"]["lagThreshold"] == "50000"
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    assert "authenticationRef" not in trigger  # PLAINTEXT: nothing to authenticate
    assert release.all("HorizontalPodAutoscaler") == []


def test_keda_authenticates_like_the_pods(releases: dict[str, Release]) -> None:
    release = releases["sasl-scram-tls"]
    (trigger,) = release.one("ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["sasl"] == "scram_sha512"
    assert trigger["metadata"]["tls"] == "enable"
    auth = release.one("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    password = release.one("Secret")["metadata"]["name"], "kafka-sasl-password"
    assert refs == {
        "password": password,
        "ca": ("ofsys-kafka-tls", "ca.crt"),
        "cert": ("ofsys-kafka-tls", "tls.crt"),
        "key": ("ofsys-kafka-tls", "tls.key"),
    }
    assert auth["spec"]["env"] == [
        {"parameter": "username", "name": "OFSYS_KAFKA_SASL_USERNAME", "containerName": "pipeline"}
    ]


@pytest.mark.parametrize(
    ("mechanism", "keda"),
    [("PLAIN", "plaintext"), ("SCRAM-SHA-256", "scram_sha256"), ("SCRAM-SHA-512", "scram_sha512")],
)
def test_keda_speaks_the_pipelines_sasl_mechanism(
    chart: helm.Chart, mechanism: str, keda: str
) -> None:
    sasl = {"mechanism": mechanism, "username": "u", "existingSecret": "kafka"}
    values = {
        "kafka": {"securityProtocol": "SASL_PLAINTEXT", "sasl": sasl},
        "autoscaling": {"keda": {"enabled": True}},
    }
    release = render(chart, values)
    (trigger,) = release.one("ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["sasl"] == keda
    assert "tls" not in trigger["metadata"]
    assert release.settings["OFSYS_KAFKA_SASL_MECHANISM"] == mechanism


def test_tls_without_a_secret_uses_the_system_ca_bundle(chart: helm.Chart) -> None:
    release = render(chart, {"kafka": {"securityProtocol": "SSL"}})
    assert config.load({**_environment(release), "OFSYS_ACCOUNT_KEY": ACCOUNT_KEY}).kafka == {
        "security.protocol": "SSL",
        "ssl.ca.location": "probe",
    }
    assert [v["name"] for v in release.pod["volumes"]] == ["tmp"]


def test_hpa_scales_on_the_external_lag_metric(releases: dict[str, Release]) -> None:
    release = releases["autoscaling-hpa"]
    hpa = release.one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] == 2
    assert hpa["spec"]["maxReplicas"] == 8 <= release.merged("kafka", "topicPartitions")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "kafka_consumergroup_lag"
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {
        "consumergroup": "ofsys-pipeline",
        "topic": "site-events",
    }
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "50000"}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert release.all("ScaledObject") == []


def test_hpa_max_defaults_to_the_partition_count(chart: helm.Chart) -> None:
    release = render(
        chart, {"kafka": {"topicPartitions": 6}, "autoscaling": {"hpa": {"enabled": True}}}
    )
    hpa = release.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] == 6
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"] == {
        "consumergroup": "ofsys-pipeline",
        "topic": "site-events",
    }


# -- values.yaml, schema and the generated reference -----------------------------------


def test_values_yaml_has_the_modeline_and_a_comment_above_every_key() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    assert lines[0] == "# yaml-language-server: $schema=values.schema.json"
    uncommented = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        if not lines[number - 1].strip().startswith("#"):
            uncommented.append(f"values.yaml:{number + 1}: {stripped}")
    assert not uncommented, uncommented


def _objects(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from _objects(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _objects(node["items"], f"{path}[]")


def test_schema_is_closed_and_described() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    for path, node in _objects(schema):
        if path:
            assert node.get("description"), f"{path} has no description"
        if node.get("type") == "object":
            closed = node.get("additionalProperties")
            # Closed (false), or a free map whose values are typed (labels, annotations).
            assert closed is False or isinstance(closed, dict), f"{path} is open"


def test_schema_and_values_yaml_have_the_same_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def keys(node: Any, schema_node: dict[str, Any], path: str) -> None:
        properties = schema_node.get("properties")
        if not isinstance(node, dict) or properties is None:
            return
        assert set(node) == set(properties), path
        for key, value in node.items():
            keys(value, properties[key], f"{path}.{key}")

    keys(_load(CHART / "values.yaml"), schema, "")


def _values_reference() -> Any:
    spec = importlib.util.spec_from_file_location(
        "values_reference", ROOT / "ops" / "values_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("values_reference", module)
    spec.loader.exec_module(module)
    return module


def test_docs_values_table_is_generated_from_the_schema() -> None:
    reference = _values_reference()
    document = (ROOT / "docs" / "deploy.md").read_text()
    assert reference.embedded(document) == reference.render(CHART), (
        "docs/deploy.md is out of date: run python ops/values_reference.py --update docs/deploy.md"
    )
