"""Deployment files: Kubernetes manifests valid against the API schemas and consistent with each other,
Cloud Build and Heroku files in shape."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
FILES = ["deployment.yaml", "service.yaml", "hpa.yaml"]


def doc(name: str) -> dict:
    return yaml.safe_load((K8S / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", FILES)
def test_manifest_is_valid_for_the_kubernetes_api(name: str) -> None:
    kubernetes_validate.validate(doc(name), kubernetes_validate.latest_version(), strict=True)


def test_an_invalid_manifest_is_rejected() -> None:
    broken = doc("deployment.yaml")
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_labels_and_selectors_agree() -> None:
    deployment, service, hpa = doc("deployment.yaml"), doc("service.yaml"), doc("hpa.yaml")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items(), "the Deployment must select its own pods"
    assert service["spec"]["selector"].items() <= pod_labels.items(), "the Service must reach the pods"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    port_names = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_probes_resources_and_security() -> None:
    pod = doc("deployment.yaml")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
    assert int(env["PORT"]) == container["ports"][0]["containerPort"]
    # keys come from a Secret (optional: the access settings are off unless it exists), never a literal
    assert env["PREDICT_API_KEYS"]["secretKeyRef"]["optional"] is True
    assert env["PROTECT_METADATA"] == "false" and env["OUTPUT_PRECISION"] == ""  # documented, off


def test_hpa_scales_on_cpu_between_bounds() -> None:
    spec = doc("hpa.yaml")["spec"]
    assert 1 <= spec["minReplicas"] < spec["maxReplicas"]
    assert spec["metrics"][0]["resource"]["name"] == "cpu"


def test_the_autoscaler_alone_sets_the_replica_count() -> None:
    """`replicas` beside an HPA resets the scale to that number on every `kubectl apply` (each deploy)."""
    target = doc("hpa.yaml")["spec"]["scaleTargetRef"]
    deployment = doc("deployment.yaml")
    assert (target["kind"], target["name"]) == (deployment["kind"], deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"]


def test_kustomization_lists_the_manifests_and_names_the_image() -> None:
    kustomization = doc("kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(FILES)
    image = doc("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert [i["name"] for i in kustomization["images"]] == [image]


def test_cloud_build_builds_tests_pushes_and_deploys() -> None:
    build = yaml.safe_load((ROOT / "deploy" / "gcp" / "cloudbuild.yaml").read_text(encoding="utf-8"))
    ids = [s["id"] for s in build["steps"]]
    assert ids.index("build") < ids.index("test") < ids.index("push") < ids.index("deploy")


def test_heroku_app_json_uses_the_container_stack() -> None:
    app = json.loads((ROOT / "app.json").read_text(encoding="utf-8"))
    assert app["stack"] == "container"
    assert "web" in app["formation"]
