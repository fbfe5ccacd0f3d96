"""Deployment files: Kubernetes manifests valid against the API schemas and consistent with each other,
Cloud Build and Heroku files in shape."""

from __future__ import annotations

import json
import os

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
FILES = ["deployment.yaml", "service.yaml", "hpa.yaml", "redis.yaml"]


def doc(name: str) -> dict:
    return yaml.safe_load((K8S / name).read_text(encoding="utf-8"))


def docs(name: str) -> list[dict]:
    return list(yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")))


@pytest.mark.parametrize("name", FILES)
def test_manifest_is_valid_for_the_kubernetes_api(name: str) -> None:
    for manifest in docs(name):
        kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)


def test_the_makefile_validates_every_manifest() -> None:
    """`make lint-workflows` runs kubernetes-validate on K8S_MANIFESTS: all of kustomization.yaml's resources."""
    listed = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("K8S_MANIFESTS"))
    assert sorted(listed.split(":=")[1].split()) == sorted(f"deploy/k8s/{name}" for name in FILES)


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_the_deployment_takes_the_admin_key_and_redis_url_from_secrets() -> None:
    container = doc("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    admin = env["ADMIN_API_KEYS"]["valueFrom"]["secretKeyRef"]
    assert admin == {"name": "mlops-template-admin", "key": "ADMIN_API_KEYS", "optional": True}  # absent: 503
    redis_ref = env["REDIS_URL"]["valueFrom"]["secretKeyRef"]
    assert not redis_ref.get("optional")  # replicas without shared state would each keep their own: refuse to start
    generated = {g["name"]: g for g in doc("kustomization.yaml")["secretGenerator"]}
    literals = dict(item.split("=", 1) for item in generated[redis_ref["name"]]["literals"])
    url = literals[redis_ref["key"]]
    # the default URL reaches the in-cluster Redis of redis.yaml
    redis_deployment, redis_service = docs("redis.yaml")
    port = redis_service["spec"]["ports"][0]
    assert url == f"redis://{redis_service['metadata']['name']}:{port['port']}/0"
    assert (
        redis_service["spec"]["selector"].items() <= redis_deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    redis_container = redis_deployment["spec"]["template"]["spec"]["containers"][0]
    assert port["targetPort"] in {p["name"] for p in redis_container["ports"]}
    assert "--save" in redis_container["args"] and redis_container["securityContext"]["readOnlyRootFilesystem"]
    # the model Service must not select Redis' pods (same app name, another component)
    assert (
        not doc("service.yaml")["spec"]["selector"].items()
        <= redis_deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_prometheus_finds_the_service_by_annotations_or_service_monitor() -> None:
    template = doc("deployment.yaml")["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    port = template["spec"]["containers"][0]["ports"][0]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == port["containerPort"]
    component = K8S / "components" / "servicemonitor"
    kustomization = yaml.safe_load((component / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Component"
    (monitor,) = [yaml.safe_load((component / name).read_text()) for name in kustomization["resources"]]
    assert monitor["kind"] == "ServiceMonitor"
    service = doc("service.yaml")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"][0]["path"] == annotations["prometheus.io/path"]
    # offered, commented, in the main kustomization: the path it names is this component
    assert "#   - components/servicemonitor" in (K8S / "kustomization.yaml").read_text()


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
    env = env_of(container)
    assert int(env["PORT"]["value"]) == container["ports"][0]["containerPort"]
    # /predict keys come from a Secret (optional: the access settings are off unless it exists), never a literal
    assert env["PREDICT_API_KEYS"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert env["PROTECT_METADATA"]["value"] == "false" and env["OUTPUT_PRECISION"]["value"] == ""  # documented, off


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
    args = next(s for s in build["steps"] if s["id"] == "build")["args"]
    assert args[args.index("--build-arg") + 1] == "GIT_COMMIT=${COMMIT_SHA}"  # /model reports the commit built


def test_heroku_app_json_builds_with_the_python_buildpack_from_the_dvc_remote() -> None:
    app = json.loads((ROOT / "app.json").read_text(encoding="utf-8"))
    assert "stack" not in app  # a container-stack app built from source would need a heroku.yml
    assert app["buildpacks"] == [{"url": "heroku/python"}]
    assert app["env"]["DVC_REMOTE_URL"]["required"] is True  # bin/post_compile fails the build without a remote
    assert "web" in app["formation"]
    # what the buildpack reads for the version (runtime.txt is deprecated), and its build hook
    assert (ROOT / ".python-version").read_text().strip() == "3.11"
    assert os.access(ROOT / "bin" / "post_compile", os.X_OK)
