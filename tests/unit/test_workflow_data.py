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
