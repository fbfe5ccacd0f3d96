"""deploy.yml (the job cd.yml calls for staging, then production) run for real with act (tests/act_support.py).

DEPLOY_TARGET=none deploys nothing and smoke-tests nothing. DEPLOY_TARGET=heroku runs the real deploy.sh
and curl against a fake Heroku Platform API on loopback, with a recorded stand-in `docker` CLI (no Docker
engine here) and a stand-in for docker/login-action (it only talks to a registry); the Heroku app's web_url
is a real service on loopback serving a real bundle, so the smoke test is real: it passes when the service
reports the deployed bundle, and when it reports another release the job rolls back (POST /releases).
cd.yml itself is not run: its build job needs Docker (buildx, push) - tests/unit/test_workflows.py checks
what it passes here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.act_support import ActRun, fake_handler_server, pinned_ref, recorded, run_act, standin_action, throwaway_repo

IMAGE = "ghcr.io/example/loans:sha-" + "c" * 40 + "@sha256:" + "d" * 64
IMAGE_ID = "sha256:" + "1" * 64
SMOKE = "Smoke test (/ready, /model is this release, /health, /predict with the example)"
DOCKER = r"""#!{python}
import json, os, sys
with open(os.environ["DOCKER_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
if sys.argv[1:2] == ["login"]:
    sys.stdin.read()
if sys.argv[1:2] == ["inspect"]:
    print("{image_id}")
"""

pytestmark = pytest.mark.workflows


@pytest.fixture(scope="module")
def deploy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("deploy-workflow")
    repo = throwaway_repo(base / "repo")
    bin_dir = base / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(DOCKER.format(python=sys.executable, image_id=IMAGE_ID))
    (bin_dir / "docker").chmod(0o755)
    login = standin_action(base / "login-action", "login-action", ["registry", "username", "password"], {})
    heroku: dict = {"requests": [], "web_url": ""}

    def answer(method: str, path: str, body: dict | None, headers: dict) -> tuple[int, object]:
        heroku["requests"].append((method, path, body, headers))
        if (method, path) == ("GET", "/apps/loans/releases"):
            return 200, [{"id": "release-41"}]
        if (method, path) == ("GET", "/apps/loans"):
            return 200, {"web_url": heroku["web_url"] + "/"}
        return 200, {}

    with fake_handler_server(answer) as url:
        yield {
            "repo": repo,
            "base": base,
            "state": base / "act",
            "bin": bin_dir,
            "heroku": heroku,
            "heroku_url": url,
            "actions": {pinned_ref("deploy.yml", "docker/login-action"): login},
        }


def deploy_run(
    deploy: dict, name: str, variables: dict, inputs: dict, secrets: dict | None = None
) -> tuple[ActRun, Path]:
    records = deploy["base"] / f"records-{name}"
    records.mkdir()
    inputs = {"environment": "staging", "image": IMAGE, **inputs}
    env = {
        "HEROKU_API_URL": deploy["heroku_url"],
        "DOCKER_LOG": str(records / "docker.jsonl"),
        "STANDIN_RECORDS": str(records),
        "SMOKE_WAIT": "8",
    }
    run = run_act(deploy["repo"], "workflow_call", "deploy.yml", deploy["state"], payload={"inputs": inputs},
                  inputs=inputs, variables=variables, secrets=secrets, env=env, path=deploy["bin"],
                  local_actions=deploy["actions"])  # fmt: skip
    return run, records


def docker_calls(records: Path) -> list[list[str]]:
    log = records / "docker.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_deploy_target_none_deploys_and_checks_nothing(deploy: dict) -> None:
    run, records = deploy_run(deploy, "none", {"DEPLOY_TARGET": "none"}, {})
    assert run.returncode == 0, run.tail()
    assert "DEPLOY_TARGET=none; nothing to deploy" in run.log
    assert run.step(SMOKE) is None
    assert run.step("Roll back to the previous image") is None
    assert docker_calls(records) == []
    assert deploy["heroku"]["requests"] == []


def test_heroku_deploy_smoke_tests_the_release_and_rolls_back_when_another_answers(
    deploy: dict, live_server, served_bundle: Path
) -> None:
    """One real service on loopback plays the Heroku app: the first deploy names its bundle (smoke passes), the
    second names another bundle, so the smoke test sees the old release still answering and the job rolls back."""
    commit = "c0ffee" * 6 + "beef"  # the image's GIT_COMMIT: the bundle records no commit
    server = live_server(served_bundle, GIT_COMMIT=commit)
    deploy["heroku"]["web_url"] = server.url
    metadata = json.loads((served_bundle / "metadata.json").read_text())
    settings = {"DEPLOY_TARGET": "heroku", "HEROKU_APP": "loans"}
    secrets = {"HEROKU_API_KEY": "k3y"}
    served = {"model-version": metadata["model_version"], "git-commit": commit}
    ok, records = deploy_run(deploy, "heroku", settings, served, secrets)
    assert ok.returncode == 0, ok.tail()
    assert ok.step("Deploy the image digest") == "success"
    assert ok.step(SMOKE) == "success"
    assert ok.step("Roll back to the previous image") is None
    assert f"serving {{'model_version': '{metadata['model_version']}'" in ok.log
    made = docker_calls(records)
    assert ["pull", IMAGE] in made
    assert ["push", "registry.heroku.com/loans/web"] in made
    login = recorded(records, "login-action")
    assert login["inputs"]["registry"] == "ghcr.io"
    requests = deploy["heroku"]["requests"]
    formation = next(r for r in requests if r[0] == "PATCH")
    assert formation[1] == "/apps/loans/formation"
    assert formation[2] == {"updates": [{"type": "web", "docker_image": IMAGE_ID}]}
    assert formation[3]["Authorization"] == "Bearer k3y"
    assert not any(r[0] == "POST" for r in requests)  # no rollback

    other = {"model-version": "0" * 12, "git-commit": "0" * 40}  # the release just deployed is not the one answering
    failed, _ = deploy_run(deploy, "heroku-rollback", settings, other, secrets)
    assert failed.returncode != 0
    assert failed.step(SMOKE) == "failure"
    assert "still serves another release" in failed.log
    assert failed.step("Roll back to the previous image") == "success"
    rollback = [r for r in deploy["heroku"]["requests"] if r[0] == "POST"]
    assert [(r[1], r[2]) for r in rollback] == [("/apps/loans/releases", {"release": "release-41"})]
