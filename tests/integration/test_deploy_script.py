"""deploy/deploy.sh (make deploy / make rollback) with stand-ins for docker, gcloud, kubectl, kustomize and
curl that record every call: checks what would be sent to Heroku, Cloud Run and GKE, and the rollbacks.
Heroku's git (DEPLOY_TARGET=heroku-buildpack) is stood in by `git http-backend` behind a loopback server
that checks the API key, so the push is a real smart-HTTP git push."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, FakeHandler, loopback_server, require_tool

IMAGE = "ghcr.io/acme/loans:sha-abc123@sha256:" + "d" * 64
FAKE = r"""#!{python}
import json, os, sys
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([tool, *args]) + "\n")
if os.environ.get("FAKE_FAIL") == tool + " " + (args[0] if args else ""):
    sys.exit(1)
joined = " ".join(args)
if tool == "docker" and args[:1] == ["inspect"]:
    ref = args[-1]
    print("sha256:" + "1" * 64 if "{{{{.Id}}}}" in joined else ref.rsplit(":", 1)[0] + "@sha256:" + "a" * 64)
elif tool == "gcloud" and "describe" in args:
    old = "europe-docker.pkg.dev/p/r/old@sha256:" + "0" * 64
    print("https://loans-xyz.a.run.app" if "status.url" in joined else old)
elif tool == "kubectl" and args[:2] == ["get", "deployment"]:
    print("europe-docker.pkg.dev/p/r/old@sha256:" + "0" * 64, end="")
elif tool == "kubectl" and args[:2] == ["get", "service"]:
    print("203.0.113.7", end="")
elif tool == "curl":
    url = next(a for a in args if a.startswith("http"))
    method = args[args.index("-X") + 1]
    if method == "GET" and url.endswith("/releases"):
        print(json.dumps([{{"id": "release-41"}}]))
    elif method == "GET":
        print(json.dumps({{"web_url": "https://loans-1234.herokuapp.com/"}}))
    else:
        print("{{}}")
"""


@pytest.fixture
def fakes(tmp_path: Path) -> dict:
    require_tool("bash")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "fake"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(0o755)
    for tool in ("docker", "gcloud", "kubectl", "kustomize", "curl"):
        (bin_dir / tool).symlink_to(script)
    log = tmp_path / "calls.jsonl"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_LOG": str(log),
        "DEPLOY_STATE": str(tmp_path / "state"),
        "HOME": str(tmp_path),
        "LB_WAIT_SECONDS": "0",
    }
    return {"env": env, "log": log, "state": tmp_path / "state", "tmp": tmp_path}


def deploy(fakes: dict, action: str, cwd: Path = ROOT, **settings: str) -> subprocess.CompletedProcess:
    env = {**fakes["env"], **settings}
    return subprocess.run(
        ["bash", str(ROOT / "deploy" / "deploy.sh"), action],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def calls(fakes: dict) -> list[list[str]]:
    return [json.loads(line) for line in fakes["log"].read_text().splitlines()] if fakes["log"].exists() else []


def test_none_deploys_nothing(fakes: dict) -> None:
    result = deploy(fakes, "deploy", DEPLOY_TARGET="none")
    assert result.returncode == 0
    assert "nothing to deploy" in result.stdout
    assert calls(fakes) == []


def test_bad_settings_are_named(fakes: dict) -> None:
    unknown = deploy(fakes, "deploy", DEPLOY_TARGET="aws")
    assert "must be heroku, heroku-buildpack, cloudrun, gke or none" in unknown.stderr
    unpinned = deploy(fakes, "deploy", DEPLOY_TARGET="heroku", IMAGE="ghcr.io/acme/loans:latest")
    assert unpinned.returncode == 2
    assert "pinned by digest" in unpinned.stderr
    missing = deploy(fakes, "deploy", DEPLOY_TARGET="heroku", IMAGE=IMAGE)
    assert missing.returncode == 2
    assert "HEROKU_APP is not set" in missing.stderr


def test_heroku_pushes_the_image_and_releases_it_by_image_id(fakes: dict) -> None:
    settings = {
        "DEPLOY_TARGET": "heroku",
        "IMAGE": IMAGE,
        "HEROKU_APP": "loans",
        "HEROKU_API_KEY": "k3y",
        "GITHUB_OUTPUT": str(fakes["tmp"] / "out"),
    }
    result = deploy(fakes, "deploy", **settings)
    assert result.returncode == 0, result.stderr
    made = calls(fakes)
    assert ["docker", "pull", IMAGE] in made
    assert ["docker", "push", "registry.heroku.com/loans/web"] in made
    patch = next(c for c in made if c[0] == "curl" and "PATCH" in c)
    assert patch[patch.index("-X") + 2] == "https://api.heroku.com/apps/loans/formation"
    body = json.loads(patch[patch.index("--data") + 1])
    assert body == {"updates": [{"type": "web", "docker_image": "sha256:" + "1" * 64}]}
    assert "Authorization: Bearer k3y" in patch
    assert (fakes["state"] / "url").read_text().strip() == "https://loans-1234.herokuapp.com"
    assert "url=https://loans-1234.herokuapp.com" in (fakes["tmp"] / "out").read_text()
    assert deploy(fakes, "rollback", **settings).returncode == 0
    rollback = [c for c in calls(fakes) if c[0] == "curl" and "POST" in c][-1]
    assert rollback[rollback.index("-X") + 2].endswith("/apps/loans/releases")
    assert json.loads(rollback[rollback.index("--data") + 1]) == {"release": "release-41"}


def test_cloud_run_deploys_the_artifact_registry_digest_and_rolls_back(fakes: dict) -> None:
    settings = {
        "DEPLOY_TARGET": "cloudrun",
        "IMAGE": IMAGE,
        "GCP_PROJECT_ID": "proj",
        "GCP_REGION": "europe-west1",
        "GAR_REPOSITORY": "mlops",
        "CLOUD_RUN_SERVICE": "loans",
    }
    assert deploy(fakes, "deploy", **settings).returncode == 0
    ar = "europe-west1-docker.pkg.dev/proj/mlops/mlops-template"
    made = calls(fakes)
    assert ["docker", "tag", IMAGE, f"{ar}:sha-abc123"] in made
    run_deploy = next(c for c in made if c[:3] == ["gcloud", "run", "deploy"])
    assert run_deploy[run_deploy.index("--image") + 1] == f"{ar}@sha256:" + "a" * 64
    assert (fakes["state"] / "url").read_text().strip() == "https://loans-xyz.a.run.app"
    assert deploy(fakes, "rollback", **settings).returncode == 0
    back = [c for c in calls(fakes) if c[:3] == ["gcloud", "run", "deploy"]][-1]
    assert back[back.index("--image") + 1] == "europe-docker.pkg.dev/p/r/old@sha256:" + "0" * 64


def test_gke_sets_the_image_with_kustomize_applies_and_waits(fakes: dict) -> None:
    settings = {
        "DEPLOY_TARGET": "gke",
        "IMAGE": IMAGE,
        "GCP_PROJECT_ID": "proj",
        "GCP_REGION": "europe-west1",
        "GAR_REPOSITORY": "mlops",
        "K8S_NAMESPACE": "models",
    }
    result = deploy(fakes, "deploy", **settings)
    assert result.returncode == 0, result.stderr
    made = calls(fakes)
    edit = next(c for c in made if c[0] == "kustomize")
    assert edit == [
        "kustomize",
        "edit",
        "set",
        "image",
        "mlops-template=europe-west1-docker.pkg.dev/proj/mlops/mlops-template@sha256:" + "a" * 64,
    ]
    apply = next(c for c in made if c[:2] == ["kubectl", "apply"])
    assert apply[apply.index("-k") + 1].endswith("state/k8s")
    assert "models" in apply
    assert (fakes["state"] / "k8s" / "deployment.yaml").read_text() == (ROOT / "deploy/k8s/deployment.yaml").read_text()
    assert any(c[:3] == ["kubectl", "rollout", "status"] for c in made)
    assert (fakes["state"] / "url").read_text().strip() == "http://203.0.113.7"
    assert deploy(fakes, "rollback", **settings).returncode == 0
    assert [
        "kubectl",
        "set",
        "image",
        "deployment/mlops-template",
        "model-server=europe-docker.pkg.dev/p/r/old@sha256:" + "0" * 64,
        "-n",
        "models",
    ] in calls(fakes)


def test_gke_behind_an_ingress_uses_service_url_instead_of_waiting_for_a_load_balancer(fakes: dict) -> None:
    settings = {"DEPLOY_TARGET": "gke", "IMAGE": IMAGE, "GCP_PROJECT_ID": "p", "GCP_REGION": "europe-west1",
                "GAR_REPOSITORY": "mlops", "SERVICE_URL": "https://loans.example.com/", "SERVICE_NAME": "loans",
                "ROLLOUT_TIMEOUT": "120s", "LB_WAIT_TRIES": "1"}  # fmt: skip
    result = deploy(fakes, "deploy", **settings)
    assert result.returncode == 0, result.stderr
    assert (fakes["state"] / "url").read_text().strip() == "https://loans.example.com"
    made = calls(fakes)
    assert not any(c[:2] == ["kubectl", "get"] and "service" in c for c in made)  # no load-balancer wait
    assert ["kubectl", "rollout", "status", "deployment/loans", "-n", "default", "--timeout=120s"] in made


def test_the_smoke_tests_token_is_an_identity_token_for_a_private_cloud_run_service(fakes: dict) -> None:
    (fakes["state"]).mkdir(parents=True, exist_ok=True)
    (fakes["state"] / "url").write_text("https://loans-xyz.a.run.app\n")
    private = deploy(fakes, "token", DEPLOY_TARGET="cloudrun", CLOUD_RUN_FLAGS="--no-allow-unauthenticated")
    assert private.returncode == 0, private.stderr
    assert ["gcloud", "auth", "print-identity-token", "--audiences=https://loans-xyz.a.run.app"] in calls(fakes)
    for target, flags in (("cloudrun", ""), ("heroku", ""), ("none", "")):
        public = deploy(fakes, "token", DEPLOY_TARGET=target, CLOUD_RUN_FLAGS=flags)
        assert (public.returncode, public.stdout) == (0, "")


def test_a_failed_push_stops_before_anything_is_released(fakes: dict) -> None:
    settings = {
        "DEPLOY_TARGET": "heroku",
        "IMAGE": IMAGE,
        "HEROKU_APP": "loans",
        "HEROKU_API_KEY": "k",
        "FAKE_FAIL": "docker push",
    }
    assert deploy(fakes, "deploy", **settings).returncode != 0
    assert not any(c[0] == "curl" and "PATCH" in c for c in calls(fakes))


@pytest.fixture
def heroku_git(tmp_path: Path) -> Iterator[dict]:
    """A bare repository served over smart HTTP by `git http-backend`; 401 unless Basic auth carries the key."""
    require_tool("git")
    bare = tmp_path / "loans.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    seen: list[str | None] = []

    class Handler(FakeHandler):
        def _handle(self) -> None:
            seen.append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"heroku:k3y").decode():
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="Heroku"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            cgi = {"GIT_PROJECT_ROOT": str(tmp_path), "GIT_HTTP_EXPORT_ALL": "1", "REMOTE_USER": "heroku",
                   "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
                   "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                   "PATH": os.environ["PATH"]}  # fmt: skip
            out = subprocess.run(["git", "http-backend"], input=body, env=cgi, capture_output=True, check=True).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if line)
            self.send_response(int(headers.pop("Status", "200").split()[0]))
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _handle

    with loopback_server(Handler) as url:
        yield {"url": f"{url}/loans.git", "bare": bare, "seen": seen}


def source_repo(path: Path, commits: int = 2) -> list[str]:
    """A small repository with `commits` commits; returns their hashes, oldest first."""
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for n in range(commits):
        (path / "Procfile").write_text(f"web: exec python -m mlops_template serve  # {n}\n")
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", f"commit {n}"], check=True)
    return subprocess.run([*git, "log", "--reverse", "--format=%H"], capture_output=True, text=True,
                          check=True).stdout.split()  # fmt: skip


def app_main(heroku_git: dict) -> str:
    rev = ["git", "-C", str(heroku_git["bare"]), "rev-parse", "refs/heads/main"]
    return subprocess.run(rev, capture_output=True, text=True, check=True).stdout.strip()


def test_heroku_buildpack_pushes_the_built_commit_to_the_apps_git_and_rolls_back_by_release(
    fakes: dict, heroku_git: dict
) -> None:
    source = fakes["tmp"] / "source"
    first, built = source_repo(source)
    settings = {"DEPLOY_TARGET": "heroku-buildpack", "HEROKU_APP": "loans", "HEROKU_API_KEY": "k3y",
                "HEROKU_GIT_URL": heroku_git["url"]}  # fmt: skip
    result = deploy(fakes, "deploy", cwd=source, **settings)  # the checkout (deploy.yml checks out the built commit)
    assert result.returncode == 0, result.stderr
    assert app_main(heroku_git) == built
    assert "Basic " + base64.b64encode(b"heroku:k3y").decode() in heroku_git["seen"]
    assert "k3y" not in (source / ".git" / "config").read_text()  # the key is never written to the clone
    made = [c for c in calls(fakes) if c[0] == "curl"]
    assert [(c[c.index("-X") + 1], c[c.index("-X") + 2]) for c in made] == [
        ("GET", "https://api.heroku.com/apps/loans/releases"),  # recorded before the push: rollback's target
        ("GET", "https://api.heroku.com/apps/loans"),
    ]
    assert all("Accept: application/vnd.heroku+json; version=3" in c for c in made)  # no docker-releases variant
    assert not any(c[0] == "docker" for c in calls(fakes))
    assert (fakes["state"] / "url").read_text().strip() == "https://loans-1234.herokuapp.com"
    # DEPLOY_COMMIT: an older commit replaces the app's main although it is not a fast-forward
    again = deploy(fakes, "deploy", cwd=source, **{**settings, "DEPLOY_COMMIT": first})
    assert again.returncode == 0, again.stderr
    assert app_main(heroku_git) == first
    assert deploy(fakes, "rollback", cwd=source, **settings).returncode == 0
    rollback = [c for c in calls(fakes) if c[0] == "curl" and "POST" in c][-1]
    assert rollback[rollback.index("-X") + 2] == "https://api.heroku.com/apps/loans/releases"
    assert json.loads(rollback[rollback.index("--data") + 1]) == {"release": "release-41"}


def test_heroku_buildpack_refuses_a_shallow_clone_and_a_wrong_key(fakes: dict, heroku_git: dict) -> None:
    source = fakes["tmp"] / "source"
    source_repo(source)
    shallow = fakes["tmp"] / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{source}", str(shallow)], check=True)
    settings = {"DEPLOY_TARGET": "heroku-buildpack", "HEROKU_APP": "loans", "HEROKU_API_KEY": "k3y",
                "HEROKU_GIT_URL": heroku_git["url"]}  # fmt: skip
    refused = deploy(fakes, "deploy", cwd=shallow, **settings)
    assert refused.returncode == 2
    assert "shallow" in refused.stderr and "fetch-depth: 0" in refused.stderr
    wrong = deploy(fakes, "deploy", cwd=source, **{**settings, "HEROKU_API_KEY": "nope"})
    assert wrong.returncode != 0
    assert not (heroku_git["bare"] / "refs" / "heads" / "main").exists()
    assert not (fakes["state"] / "url").exists()
