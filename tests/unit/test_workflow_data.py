"""ci.yml without the data: the jobs that need it wait for the `data` job and are skipped when it says so;
lint and tests never depend on it. (tests/integration/pipeline/test_fork_data.py runs it with act.)"""

from mlops_template.cli import COMMANDS
from tests.conftest import ROOT
from tests.unit.test_workflows import load

JOBS = load(ROOT / ".github" / "workflows" / "ci.yml")["jobs"]
AVAILABLE = "${{ needs.data.outputs.available == 'true' }}"


def test_pipeline_and_image_run_only_with_the_data():
    for name in ("pipeline", "image"):
        assert JOBS[name]["needs"] == "data" and JOBS[name]["if"] == AVAILABLE, name
    assert JOBS["data"]["outputs"]["available"] == "${{ steps.access.outputs.available }}"


def test_lint_and_tests_never_wait_for_the_data():
    assert "needs" not in JOBS["lint"] and "needs" not in JOBS["test"]


def test_the_data_step_knows_which_runs_have_no_secrets():
    step = next(s for s in JOBS["data"]["steps"] if s.get("id") == "access")
    assert step["run"] == "make data-access" and "data-access" in COMMANDS
    secrets = step["env"]["DATA_SECRETS"]
    # GitHub gives no secrets to pull requests from forks, nor to Dependabot's
    assert "github.event.pull_request.head.repo.full_name != github.repository" in secrets
    assert "github.actor == 'dependabot[bot]'" in secrets
    assert JOBS["data"]["permissions"] == {"contents": "read"}


def test_remote_credentials_and_the_sample_fallback_reach_the_jobs_that_need_the_data():
    outputs = JOBS["data"]["outputs"]
    assert outputs["remote"] == "${{ steps.access.outputs.remote }}"
    assert outputs["sample"] == "${{ steps.access.outputs.sample }}"
    access = next(s for s in JOBS["data"]["steps"] if s.get("id") == "access")
    assert access["env"]["DVC_REMOTE_URL"] == "${{ vars.DVC_REMOTE_URL }}"
    for name in ("pipeline", "image"):
        job = JOBS[name]
        assert job["env"]["DVC_REMOTE_URL"] == "${{ needs.data.outputs.remote == 'true' && vars.DVC_REMOTE_URL || '' }}"
        assert job["env"]["SAMPLE"].startswith("${{ needs.data.outputs.sample == 'true'")
        assert job["permissions"]["id-token"] == "write"  # Workload Identity Federation
        auth = next(s for s in job["steps"] if s.get("uses") == "./.github/actions/dvc-remote")
        assert auth["if"] == "${{ needs.data.outputs.remote == 'true' }}"
        assert auth["with"]["workload_identity_provider"] == "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}"
    push = next(s for s in JOBS["pipeline"]["steps"] if s.get("run") == "make push")
    assert push["if"] == "${{ github.event_name == 'push' && needs.data.outputs.remote == 'true' }}"
    assert JOBS["pipeline"]["steps"][-1] is push  # after the gate and the report: only a judged bundle


def test_cd_and_ct_check_the_data_first_and_cd_pulls_the_judged_bundle():
    for workflow, job in (("cd.yml", "build"), ("ct.yml", "retrain")):
        jobs = load(ROOT / ".github" / "workflows" / workflow)["jobs"]
        assert jobs[job]["needs"] == "data" and jobs[job]["if"] == AVAILABLE, workflow
        assert any(s.get("run") == "make data-access" for s in jobs["data"]["steps"]), workflow
    build = load(ROOT / ".github" / "workflows" / "cd.yml")["jobs"]["build"]["steps"]
    pull = next(s for s in build if s.get("run") == "make bundle-pull")
    retrain = next(s for s in build if s.get("run") == "make pipeline")
    assert pull["if"] == "${{ needs.data.outputs.remote == 'true' }}"
    assert retrain["if"] == "${{ needs.data.outputs.remote != 'true' }}"  # only without a remote
    image = next(s for s in build if s.get("id") == "build")
    assert "MODEL_VERSION=${{ steps.bundle.outputs.model_version }}" in image["with"]["build-args"]
    assert "bundle-pull" in COMMANDS
