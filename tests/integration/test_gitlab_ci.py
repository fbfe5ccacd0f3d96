""".gitlab-ci.yml run for real with gitlab-ci-local (npm, package.json) in its shell executor: the lint and
pipeline jobs, on a throwaway copy of the repository whose `origin/main` is its own main.

Not run: `test` (it runs this suite: it would run itself), `container-image` and `deploy` (a Docker engine and
a registry, which this machine does not have); tests/unit/test_workflows.py checks what they call.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from mlops_template.ci.report import MARKER
from tests.act_support import git, nested_ci_env, throwaway_repo
from tests.conftest import ROOT, missing, require_tool

pytestmark = pytest.mark.workflows


def gitlab_ci_local() -> Path:
    """node_modules/.bin/gitlab-ci-local (package.json), installed by `npm ci` when missing."""
    require_tool("node", "Debian package nodejs")
    require_tool("npm", "Debian package npm")
    require_tool("rsync", "Debian package rsync (make system-deps): gitlab-ci-local copies the project with it")
    tool = ROOT / "node_modules" / ".bin" / "gitlab-ci-local"
    if not tool.exists():
        done = subprocess.run(["make", "node_modules/.package-lock.json"], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            missing(f"npm ci failed: {done.stderr[-500:]}")
    return tool


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path, float]:
    tool = gitlab_ci_local()
    repo = throwaway_repo(tmp_path_factory.mktemp("gitlab") / "repo")
    git(repo, "remote", "add", "origin", "https://gitlab.example.invalid/example/loans.git")
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    git(repo, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
    cache = Path(os.environ.get("ACT_CACHE_DIR", ROOT / ".cache" / "act")).resolve().parent / "gitlab-ci-local"
    started = time.monotonic()
    done = subprocess.run(
        [str(tool), "--force-shell-executor", "--variable", f"UV_CACHE_DIR={cache / 'uv'}", "lint", "pipeline"],
        cwd=repo,
        env=nested_ci_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.monotonic() - started
    print(f"gitlab-ci-local lint pipeline: {seconds:.0f} s, exit {done.returncode}")  # -s shows it
    return done, repo, seconds


def test_lint_and_pipeline_jobs_pass(jobs: tuple) -> None:
    done, repo, _ = jobs
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "PASS  lint" in output
    assert "PASS  pipeline" in output
    assert "make lint lint-dockerfile lint-workflows" in output
    assert "Baseline: origin/main (" in output  # the gate compared with the default branch from git
    assert "Metric gate: **VALIDATED**" in output
    report = repo / ".gitlab-ci-local" / "artifacts" / "pipeline" / "reports" / "report.md"
    assert report.is_file(), sorted(str(p) for p in (repo / ".gitlab-ci-local").glob("artifacts/*/*"))
    assert report.read_text(encoding="utf-8").startswith(MARKER)
