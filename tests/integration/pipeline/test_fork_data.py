"""A fork with its own data (not loans, another schema), with and without a DVC remote, the way README tells it:
a fresh clone's `make data` and `make run` stop at one clear error and write nothing under data/; CI (ci.yml
run for real with act) skips the pipeline with a summary that says why, for the two no-data cases (no remote;
a remote but a fork's pull request, which has no secrets); README's two ways to give CI the data, followed
literally, give green CI: "keep small data in git" (no remote) and "on a DVC remote" (the GCS emulator, with the
DVC_REMOTE_CREDENTIALS secret); CD and CT (act too) skip what needs the data with the same notice instead of
failing red.

`make -o .venv/.installed` skips only the virtualenv set-up in the clones (the test's own environment runs the
commands); everything after it is what a user's `make data` / `make run` does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.act_support import (
    REPOSITORY,
    ActRun,
    commit,
    fake_github,
    git,
    nested_ci_env,
    pull_request_event,
    run_act,
    throwaway_repo,
)
from tests.conftest import ROOT
from tests.object_store import GOOD_KEY, ObjectStore

CSV = "data/diagnosis.csv"
DATA_STEP = "Can this run get the data?"
PIPELINE_STEP = "Get the data and run the pipeline (dvc repro)"
GATE_STEP = "Gate against the baseline's metrics"
README = (ROOT / "README.md").read_text(encoding="utf-8")
ADAPT = README[README.index("## Adapt it to your data") : README.index("### params.yaml reference")]


def sh(cwd: Path, *command: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def readme_step(repo: Path, line: str, env: dict[str, str] | None = None, own: tuple[str, str] = ("", "")) -> None:
    """Run a command of README's "Adapt it to your data" exactly as written there; `own`: (README's placeholder,
    the user's value), e.g. the bucket's URL."""
    assert line in ADAPT, f"README 'Adapt it to your data' no longer says `{line}`"
    line = line.replace(*own) if own[0] else line
    sh(repo, "bash", "-c", line, env=env)


def write_our_data(repo: Path) -> None:
    """A real non-loan dataset (scikit-learn's breast cancer table) as a team's CSV, and params.yaml for it."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["diagnosis"] = frame.pop("target").map({0: "malignant", 1: "benign"})
    (repo / "data").mkdir(exist_ok=True)
    frame.to_csv(repo / CSV, index=False)
    frame.to_csv(repo.parent / "our-data.csv", index=False)  # what every clone must end up with
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["path"] = CSV
    params["schema"].update(target="diagnosis", task="binary", positive_class="malignant", drop=[])
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def run_and_commit(repo: Path, env: dict[str, str] | None = None) -> None:
    """README steps 3 and 4: `make run` up to the API it then serves (`make pipeline`: what it records), and the
    commit of params.yaml with what the pipeline recorded (the second branch's run comes from DVC's run-cache)."""
    sh(repo, "make", "-o", ".venv/.installed", "pipeline", env=env)
    readme_step(repo, "git add params.yaml dvc.lock reports/")
    readme_step(repo, 'git commit -m "our data"')


@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template as `main`, and a team's branches: `our-data` (`dvc add data`, no remote) and `in-git`
    (README: small data kept in git); `with_remote` adds the third."""
    base = tmp_path_factory.mktemp("fork-data")
    repo = throwaway_repo(base / "repo")
    git(repo, "checkout", "-q", "-b", "our-data")
    write_our_data(repo)
    readme_step(repo, "dvc add data")
    commit(repo, "our data, tracked by DVC", {}, branch="our-data")
    git(repo, "checkout", "-q", "-b", "in-git", "main")
    write_our_data(repo)
    readme_step(repo, "dvc remove data.dvc   # data/ is no longer tracked by DVC (and no longer git-ignored)")
    readme_step(repo, "git add .gitignore data.dvc data/")
    run_and_commit(repo)
    return repo


@pytest.fixture(scope="module")
def with_remote(fork: Path, object_store: ObjectStore) -> str:
    """Branch `with-remote`: README's "on a DVC remote" steps, literally, with the bucket on the GCS emulator; the
    laptop's `dvc push` authenticates with the service-account key (as `gcloud auth application-default login`
    would). Returns the remote's URL."""
    url = object_store.url("fork-data")
    # a remote another test configured in this repository's .dvc/config.local (git-ignored) must not take the push
    (fork / ".dvc" / "config.local").unlink(missing_ok=True)
    git(fork, "checkout", "-q", "-b", "with-remote", "main")
    write_our_data(fork)  # step 1: the CSV in data/ (step 2, params.yaml, is written with it)
    readme_step(fork, "dvc add data")
    readme_step(fork, "dvc remote add -d storage gs://my-bucket/dvc", own=("gs://my-bucket/dvc", url))
    readme_step(fork, "dvc push", env=object_store.env())
    readme_step(fork, "git add data.dvc .dvc/config")
    run_and_commit(fork, env=object_store.env())  # `make data` pulls from the remote on this laptop too
    assert any(name.endswith(".dir") for name in object_store.objects("fork-data/")), "README's dvc push sent nothing"
    return url


def test_readme_steps_commit_the_dvc_lock_ci_tests_check(fork: Path, with_remote: str):
    """Step 4 commits what step 3 recorded, so the fork's own check of CI's test job that dvc.lock matches
    params.yaml and the code passes with either way of keeping the data; committing params.yaml alone (`our-data`,
    what README's step 4 said before) fails it."""

    def lock_check(branch: str) -> subprocess.CompletedProcess:
        git(fork, "checkout", "-q", branch)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/test_dvc_lock.py"]
        return subprocess.run(command, cwd=fork, env=nested_ci_env(), capture_output=True, text=True, timeout=300)

    for branch in ("in-git", "with-remote"):
        check = lock_check(branch)
        assert check.returncode == 0, f"{branch}: {check.stdout[-3000:]}"
    stale = lock_check("our-data")
    assert stale.returncode == 1 and "prep: data.path" in stale.stdout, stale.stdout[-3000:]


def fresh_clone(fork: Path, branch: str, name: str) -> Path:
    clone = fork.parent / name
    git(fork.parent, "clone", "-q", "--branch", branch, str(fork), str(clone))
    return clone


def test_fresh_clone_make_data_and_make_run_stop_at_one_clear_error(fork: Path):
    clone = fresh_clone(fork, "our-data", "clone-no-remote")
    md5 = yaml.safe_load((clone / "data.dvc").read_text())["outs"][0]["md5"]
    data = sh(clone, "make", "-o", ".venv/.installed", "data", check=False)
    assert data.returncode == 2, data.stderr
    errors = [line for line in data.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in data.stderr
    error = errors[0]
    assert error.startswith(f"error: {CSV}: not found. data.dvc tracks it (data/, md5 {md5})")
    assert "no DVC remote" in error and "README 'Adapt it to your data'" in error  # way out 1
    assert f"`dvc remove data.dvc`, `git add {CSV}`" in error  # way out 2
    assert not (clone / "data").exists()

    run = sh(clone, "make", "-o", ".venv/.installed", "run", check=False)
    assert run.returncode == 2
    assert [line for line in run.stderr.splitlines() if line.startswith("error:")] == [error]
    assert not (clone / "data").exists() and not (clone / "artifacts").exists()
    assert "Running stage" not in run.stdout  # dvc repro never started

    # asked for explicitly, the loan sample is written there (and says it is not theirs)
    sample = sh(clone, "make", "-o", ".venv/.installed", "data", "SAMPLE=1")
    assert "it is not your data" in sample.stderr
    assert (clone / CSV).read_text().startswith("loan_id,")


def test_a_remote_is_pulled_and_a_run_without_secrets_is_told_why(fork: Path, tmp_path: Path):
    """Real DVC with a directory remote: `make data` pulls byte-identical data; no secrets = not available."""
    storage = tmp_path / "storage"
    git(fork, "checkout", "-q", "our-data")
    sh(fork, "dvc", "remote", "add", "--local", "-d", "backup", str(storage))
    sh(fork, "dvc", "push", "-q")
    clone = fresh_clone(fork, "our-data", "clone-with-remote")
    sh(clone, "dvc", "remote", "add", "--local", "-d", "backup", str(storage))
    sh(clone, "make", "-o", ".venv/.installed", "data")
    assert (clone / CSV).read_bytes() == (fork.parent / "our-data.csv").read_bytes()
    params = (clone / "params.yaml").read_text()
    (clone / "params.yaml").write_text(params.replace(CSV, "data/typo.csv"))
    typo = sh(clone, "make", "-o", ".venv/.installed", "data", check=False)
    assert typo.returncode == 2
    assert "error: data/typo.csv: not found after `dvc pull data.dvc` from remote 'backup'" in typo.stderr
    assert not (clone / "data" / "typo.csv").exists()  # never the sample under a fork's file name
    (clone / "params.yaml").write_text(params)

    (clone / CSV).unlink()
    outputs = tmp_path / "github-output"
    env = {**os.environ, "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    cli = [sys.executable, "-m", "mlops_template", "data-access", "--secrets"]
    absent = subprocess.run([*cli, "absent"], cwd=clone, env=env, capture_output=True, text=True)
    assert absent.returncode == 0, absent.stderr
    assert f"on the DVC remote 'backup' ({storage})" in absent.stdout
    assert "GitHub gives pull requests from forks and Dependabot no secrets" in absent.stdout
    subprocess.run([*cli, "present"], cwd=clone, env=env, capture_output=True, text=True, check=True)
    assert (
        outputs.read_text()
        == "available=false\nremote=false\nsample=false\navailable=true\nremote=true\nsample=false\n"
    )
    assert "| gate | **not run**" in (tmp_path / "summary.md").read_text()


@pytest.fixture(scope="module")
def act_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fork-data-act")


def ci_run(fork: Path, state: Path, branch: str, number: int, head_repo: str | None = None) -> ActRun:
    """ci.yml's pipeline job (and the data job it needs) for a pull request of `branch` into main."""
    git(fork, "checkout", "-q", branch)
    extra = {"head_repo": head_repo} if head_repo else {}
    payload = pull_request_event(fork, number, head=branch, **extra)
    return run_act(fork, "pull_request", "ci.yml", state, job="pipeline", payload=payload)


def assert_skipped_with_reason(run: ActRun, reason: str) -> None:
    assert run.returncode == 0, run.tail()  # neutral: nothing red
    assert run.step(DATA_STEP) == "success"
    assert re.search(r"::notice title=Pipeline and gate not run: no data::.*" + re.escape(reason), run.log)
    assert "## Data not available to this run: pipeline and gate not run" in run.summary
    assert reason in run.summary
    assert "| gate | **not run** (not a pass: no model was judged) |" in run.summary
    assert run.step(PIPELINE_STEP) is None and run.step(GATE_STEP) is None  # the pipeline job never started


@pytest.mark.workflows
def test_ci_without_a_remote_skips_the_pipeline_and_says_why(fork: Path, act_state: Path):
    run = ci_run(fork, act_state, "our-data", 21)
    assert_skipped_with_reason(run, "no DVC remote is configured")


@pytest.mark.workflows
def test_ci_of_a_fork_pull_request_without_secrets_skips_the_pipeline(fork: Path, with_remote: str, act_state: Path):
    run = ci_run(fork, act_state, "with-remote", 22, head_repo="someone/fork")
    assert_skipped_with_reason(
        run, f"on the DVC remote 'storage' ({with_remote}), which needs credentials: GitHub gives pull requests"
    )


@pytest.mark.workflows
def test_readme_data_on_a_remote_gives_green_ci_on_our_data(
    fork: Path, with_remote: str, object_store: ObjectStore, act_state: Path
):
    """README "Adapt it to your data" followed literally with a DVC remote (the GCS emulator) and README "A DVC
    remote"'s secret DVC_REMOTE_CREDENTIALS: a pull request from a branch of the fork pulls the fork's data from
    the remote, and the pipeline and the gate run on it: green, neither skipped nor on the sample."""
    git(fork, "checkout", "-q", "with-remote")
    exchanged = len(object_store.token_requests)
    # only what this machine lacks goes in by environment: Google's endpoints; the key arrives as the secret, and
    # google-github-actions/auth (.github/actions/dvc-remote) makes it the job's GOOGLE_APPLICATION_CREDENTIALS
    store = {k: v for k, v in object_store.env().items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    with fake_github() as (api, url):
        run = run_act(fork, "pull_request", "ci.yml", act_state, job="pipeline",
                      payload=pull_request_event(fork, 24, "with-remote"),
                      secrets={"DVC_REMOTE_CREDENTIALS": object_store.credentials.read_text(encoding="utf-8"),
                               "GITHUB_TOKEN": "test-token"},
                      env={"GITHUB_API_URL": url, **store})  # fmt: skip
    assert run.returncode == 0, run.tail()
    assert run.step(DATA_STEP) == "success"
    assert f"data: available to this run: `dvc pull data.dvc` from the DVC remote 'storage' ({with_remote})" in run.log
    assert run.step(PIPELINE_STEP) == "success" and run.step(GATE_STEP) == "success"
    assert "Data not available" not in run.summary and "embedded sample" not in run.summary
    # the remote was read with the secret's key: a token exchange signed by it during this run
    kids = {request["kid"] for request in object_store.token_requests[exchanged:]}
    assert kids == {GOOD_KEY}, kids
    # the gate judged a model of the fork's data: its classes, its parameters against the template's main
    summary = run.summary
    assert "Metric gate: **VALIDATED**" in summary and "✅ pass" in summary and "❌" not in summary
    assert "| **malignant** |" in summary and "| **benign** |" in summary  # the confusion matrix's rows
    assert "data/diagnosis.csv" in summary  # data.path, among the parameters changed against main
    posted = api.sent("POST", "/issues/24/comments")
    assert len(posted) == 1 and "Metric gate: **VALIDATED**" in posted[0]["body"]


@pytest.mark.workflows
def test_readme_small_data_in_git_gives_green_ci_without_a_remote(fork: Path, act_state: Path):
    """README "Adapt it to your data" followed literally, no remote, a pull request from a fork: green."""
    run = ci_run(fork, act_state, "in-git", 23, head_repo="someone/fork")
    assert run.returncode == 0, run.tail()
    assert run.step(DATA_STEP) == "success" and "Data not available" not in run.summary
    assert run.step(PIPELINE_STEP) == "success" and run.step(GATE_STEP) == "success"
    assert "| roc_auc |" in run.summary and "✅ pass" in run.summary and "❌" not in run.summary


@pytest.mark.workflows
@pytest.mark.parametrize(
    ("workflow", "job", "event", "skipped_step"),
    [
        ("cd.yml", "build", "workflow_run", "The gated model bundle the image serves (no DVC remote)"),
        ("ct.yml", "retrain", "schedule", "Get the newest data"),
    ],
)
def test_cd_and_ct_of_a_fork_without_its_data_skip_with_a_notice_not_red(
    fork: Path, act_state: Path, workflow: str, job: str, event: str, skipped_step: str
):
    """CD after CI passed on main, and the weekly CT, on a fork whose data no run can get (no remote): the same data
    check as CI's, so nothing is built or retrained and nothing is red."""
    git(fork, "checkout", "-q", "our-data")
    sha = git(fork, "rev-parse", "HEAD")
    repository = {"full_name": REPOSITORY, "name": REPOSITORY.split("/")[1], "default_branch": "main"}
    run_payload = {"conclusion": "success", "event": "push", "head_branch": "main", "head_sha": sha,
                   "head_repository": {"full_name": REPOSITORY}}  # fmt: skip
    payload = {"workflow_run": run_payload, "repository": repository} if event == "workflow_run" else {}
    run = run_act(fork, event, workflow, act_state, job=job, payload={**payload, "repository": repository})
    assert run.returncode == 0, run.tail()  # neutral: nothing red
    assert run.step(DATA_STEP) == "success"
    assert re.search(r"::notice title=Pipeline and gate not run: no data::.*no DVC remote is configured", run.log)
    assert "## Data not available to this run: pipeline and gate not run" in run.summary
    assert run.step(skipped_step) is None  # the job that needs the data never started
