"""deploy/kubernetes/base, checked without a cluster: every manifest is valid against the
Kubernetes API schemas (kubernetes-validate, offline), `kubectl kustomize` renders the
base when kubectl is installed, and what an operator relies on holds: a migrate Job, two
schedulers, probes that are real `sundial` commands, non-root containers on a read-only
root file system with resource requests, a worker grace longer than its drain, and only
real settings in the ConfigMap."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.unit.test_deploy import ALL_VARIABLES, ROOT, assert_sundial_command, loaded_with

BASE = ROOT / "deploy" / "kubernetes" / "base"
SERVICES = ("scheduler", "worker", "api")


def load() -> list[dict[str, Any]]:
    """The base's resources, as listed in its kustomization.yaml."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((BASE / name).read_text()) if d]
    return docs


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in load()}


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]


def test_every_manifest_is_valid_against_the_kubernetes_schemas() -> None:
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    for doc in load():
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_the_base(manifests) -> None:
    done = subprocess.run(["kubectl", "kustomize", str(BASE)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert {(d["kind"], d["metadata"]["name"]) for d in rendered} == set(manifests)
    for doc in rendered:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "sundial"


def test_a_migrate_job_two_schedulers_a_worker_and_an_api_behind_a_service(manifests) -> None:
    job = manifests[("Job", "sundial-migrate")]
    assert pod_spec(job)["containers"][0]["args"] == ["migrate"]
    assert manifests[("Deployment", "sundial-scheduler")]["spec"]["replicas"] == 2
    assert ("Deployment", "sundial-worker") in manifests
    api = manifests[("Deployment", "sundial-api")]
    service = manifests[("Service", "sundial-api")]
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]


def test_containers_run_real_sundial_commands_non_root_read_only_with_requests(manifests) -> None:
    for (kind, name), manifest in manifests.items():
        if kind not in ("Deployment", "Job"):
            continue
        spec = pod_spec(manifest)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == 1000, f"{name}: the image's uid"
        assert spec["automountServiceAccountToken"] is False, name
        mounts = set()
        for container in spec["containers"]:
            assert container["image"] == "sundial", name
            assert_sundial_command(["sundial", *container["args"]])
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {e.get("secretRef", {}).get("name") for e in container["envFrom"]} >= {"sundial"}
            mounts |= {m["mountPath"] for m in container.get("volumeMounts", [])}
        if kind == "Deployment":
            health_dir = manifests[("ConfigMap", "sundial-config")]["data"]["HEALTH_DIR"]
            assert {health_dir, "/tmp"} <= mounts, f"{name}: writable HEALTH_DIR and /tmp"


def test_probes_check_each_service_with_its_own_healthcheck(manifests) -> None:
    for service in ("scheduler", "worker"):
        container = pod_spec(manifests[("Deployment", f"sundial-{service}")])["containers"][0]
        for probe in ("startupProbe", "livenessProbe"):
            argv = container[probe]["exec"]["command"]
            assert argv == ["sundial", "healthcheck", service]
            assert_sundial_command(argv)
    api = pod_spec(manifests[("Deployment", "sundial-api")])["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"


def test_the_worker_gets_longer_to_stop_than_its_drain_grace(manifests) -> None:
    grace = float(manifests[("ConfigMap", "sundial-config")]["data"]["WORKER_SHUTDOWN_GRACE"])
    worker = pod_spec(manifests[("Deployment", "sundial-worker")])
    assert worker["terminationGracePeriodSeconds"] > grace


def test_the_configmap_sets_only_real_settings_with_valid_values(manifests, monkeypatch) -> None:
    for name, value in manifests[("ConfigMap", "sundial-config")]["data"].items():
        assert name in ALL_VARIABLES, f"{name} is read by no settings class"
        loaded_with(monkeypatch, name, value)  # raises if the settings refuse the value
