"""deploy/kubernetes: valid objects that agree with each other and with the daemon's settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import build_parser
from orchestrator.daemon.settings import CONFIG_ENV, Settings, load_settings
from orchestrator.daemon.stopping import deploy_grace_s
from tests.deploy._support import (
    ALL_INTERFACES,
    KUBERNETES,
    check_orchestrator_env,
    configmap_toml,
    dockerfile_instructions,
    kubernetes_objects,
    kustomization,
    one,
    yaml_documents,
)


@pytest.fixture
def configured(tmp_path: Path) -> Settings:
    """The ConfigMap's file, loaded by the daemon's own loader."""
    configmap = one("ConfigMap")
    (key, text) = next(iter(configmap["data"].items()))
    path = tmp_path / key
    path.write_text(text)
    return load_settings(path)


def worker() -> dict[str, Any]:
    containers: list[dict[str, Any]] = one("Deployment")["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment")["spec"]["template"]["spec"]
    return spec


def test_every_manifest_parses_and_the_kustomization_lists_them_all() -> None:
    listed = kustomization()["resources"]
    on_disk = sorted(p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk
    for name in on_disk:
        for doc in yaml_documents(KUBERNETES / name):
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), name
    kinds = sorted(kind for kind, _ in kubernetes_objects())
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "PodMonitor",
        "PrometheusRule",
        "ScaledObject",
        "ServiceAccount",
        "TriggerAuthentication",
    ]


def test_configmap_is_a_valid_configuration_listening_beyond_loopback(
    configured: Settings,
) -> None:
    assert configured.observability.enabled
    assert configured.observability.host == ALL_INTERFACES
    # Spelled out in the file, not left to a default, so the manifests can be checked against it.
    _, _, raw = configmap_toml()
    for section, key in [
        ("queue", "url"),
        ("queue", "max_in_flight"),
        ("shutdown", "grace_period_s"),
    ]:
        assert key in raw[section], f"[{section}] {key}"
    assert "port" in raw["observability"]


def test_config_file_is_mounted_where_orchestrator_config_points() -> None:
    container = worker()
    env = {e["name"]: e.get("value", "<from a secret>") for e in container["env"]}
    check_orchestrator_env(env)
    config_path = Path(env[CONFIG_ENV])
    name, key, _ = configmap_toml()
    (volume,) = [v for v in pod_spec()["volumes"] if v.get("configMap", {}).get("name") == name]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount.get("readOnly") is True
    items = {item["key"]: item["path"] for item in volume["configMap"].get("items", [])}
    assert config_path == Path(mount["mountPath"]) / items.get(key, key)
    assert build_parser().parse_args(container["args"]).command == "run"


def test_probes_hit_the_served_paths_on_the_configured_port(configured: Settings) -> None:
    container = worker()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": configured.observability.port}
    exposed = [i.args for i in dockerfile_instructions() if i.keyword == "EXPOSE"]
    assert exposed == [str(configured.observability.port)]
    liveness = container["livenessProbe"]["httpGet"]
    readiness = container["readinessProbe"]["httpGet"]
    assert (liveness["path"], readiness["path"]) == ("/healthz", "/readyz")
    startup = container["startupProbe"]["httpGet"]
    assert startup["path"] == "/healthz"
    for probe in (liveness, readiness, startup):
        assert ports.get(probe["port"], probe["port"]) == configured.observability.port
    annotations = one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == configured.observability.port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_liveness_tolerates_a_stall_shorter_than_the_threshold() -> None:
    """The probe restarts a stalled worker, not a busy one: /healthz only fails after the stall
    threshold, and the probe then needs several failures in a row."""
    probe = worker()["livenessProbe"]
    assert probe["failureThreshold"] >= 2
    assert probe["timeoutSeconds"] < probe["periodSeconds"]


def test_termination_grace_period_outlasts_the_shutdown_grace_period(
    configured: Settings,
) -> None:
    termination = pod_spec()["terminationGracePeriodSeconds"]
    shutdown, queue = configured.shutdown, configured.queue
    assert termination >= deploy_grace_s(shutdown.grace_period_s, queue.wait_time_s)


def test_pod_is_locked_down() -> None:
    pod = pod_spec()["securityContext"]
    container = worker()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == container["runAsUser"] == 10001  # the image's USER
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["readOnlyRootFilesystem"] is True
    assert container["runAsNonRoot"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec()["automountServiceAccountToken"] is False


def test_nothing_the_configuration_writes_lands_on_the_read_only_root(
    configured: Settings,
) -> None:
    if configured.events.jsonl_path is None:
        return
    writable = [
        m["mountPath"]
        for m in worker()["volumeMounts"]
        if not m.get("readOnly") and m["name"] != "config"
    ]
    target = Path(configured.events.jsonl_path)
    assert any(target.is_relative_to(path) for path in writable), target


def test_resources_are_requested_and_bounded() -> None:
    resources = worker()["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]

    def mebibytes(quantity: str) -> float:
        number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
        return float(number) * (1024 if unit == "Gi" else 1)

    assert mebibytes(resources["requests"]["memory"]) <= mebibytes(resources["limits"]["memory"])


def test_service_account_carries_the_irsa_role() -> None:
    account = one("ServiceAccount")
    assert pod_spec()["serviceAccountName"] == account["metadata"]["name"]
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::<ACCOUNT_ID>:role/contact-orchestrator", role), role


def test_disruption_budget_selects_the_workers() -> None:
    budget = one("PodDisruptionBudget")["spec"]
    deployment = one("Deployment")["spec"]
    assert budget["selector"]["matchLabels"] == deployment["selector"]["matchLabels"]
    labels = deployment["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["maxUnavailable"] == 1


def test_keda_scales_the_worker_on_the_configured_request_queue(configured: Settings) -> None:
    scaled = one("ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["name"] == one("Deployment")["metadata"]["name"]
    assert "replicas" not in one("Deployment")["spec"], "KEDA owns the replica count"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    metadata = trigger["metadata"]
    assert all(isinstance(v, str) for v in metadata.values()), "KEDA metadata values are strings"
    assert metadata["queueURL"] == configured.queue.url
    assert metadata["awsRegion"] == configured.aws.region
    auth = one("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["podIdentity"]["provider"] == "aws"


def test_keda_scales_on_work_waiting_to_start_a_minute_of_starts_per_pod(
    configured: Settings,
) -> None:
    """KEDA divides visible messages by queueLength. Started lifecycles (in flight) are not work
    another pod could do; a backlog of one minute of starts at the account's start quota is."""
    (trigger,) = one("ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["scaleOnInFlight"] == "false"
    target = int(trigger["metadata"]["queueLength"])
    connect = configured.connect
    starts_per_minute = 60 * connect.start_webrtc_contact_rate * (1 - connect.rate_headroom)
    assert 0.9 * starts_per_minute <= target <= 1.25 * starts_per_minute
    # A backlog of a few hundred scales out (the old 800 per pod never did).
    scaled = one("ScaledObject")["spec"]
    assert -(-300 // target) > scaled["minReplicaCount"]


def test_replicas_share_the_account_quota_through_the_fleet(configured: Settings) -> None:
    """Fleet mode: one budget per operation in Redis, so no static per-pod share that would
    leave the quota half used at the usual size."""
    _, _, raw = configmap_toml()
    assert "quota_share" not in raw["connect"]
    assert configured.connect.quota_share == 1.0
    # The Redis URL carries the AUTH password: from a Secret, never in the ConfigMap.
    assert raw.get("fleet", {}).get("redis_url") is None
    (variable,) = [e for e in worker()["env"] if e["name"] == "ORCHESTRATOR_FLEET__REDIS_URL"]
    assert set(variable["valueFrom"]) == {"secretKeyRef"}
    scaled = one("ScaledObject")["spec"]
    assert 2 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]


def test_contact_events_queue_is_configured(configured: Settings) -> None:
    assert configured.contact_events.queue_url is not None
    assert configured.contact_events.queue_url != configured.queue.url


def test_pod_monitor_scrapes_the_workers_metrics_port() -> None:
    monitor = one("PodMonitor")["spec"]
    deployment = one("Deployment")["spec"]
    assert monitor["selector"]["matchLabels"] == deployment["selector"]["matchLabels"]
    (endpoint,) = monitor["podMetricsEndpoints"]
    ports = {p["name"] for p in worker()["ports"]}
    assert endpoint["port"] in ports
    annotations = deployment["template"]["metadata"]["annotations"]
    assert endpoint["path"] == annotations["prometheus.io/path"]
