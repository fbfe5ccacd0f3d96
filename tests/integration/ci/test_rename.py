"""Template cleanup: rename a copy of the project and run the copy's unit tests with the renamed package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_template.ci.rename import current_names, names_for, rename
from mlops_template.core.errors import UserError
from tests.conftest import ROOT, require_tool


def copy_project(target: Path) -> Path:
    require_tool("git")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in filter(None, files.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def test_names_from_a_repository_name() -> None:
    assert names_for("Acme.Loan-Model") == names_for("acme_loan_model")
    assert names_for("Acme.Loan-Model").package == "acme_loan_model"
    for bad in ("", "---", "9lives", "class"):
        with pytest.raises(UserError):
            names_for(bad)


@pytest.mark.integration
def test_renamed_copy_passes_its_unit_tests(tmp_path: Path) -> None:
    copy = copy_project(tmp_path / "copy")
    old = current_names(copy)
    rename(copy, "Loan-Model")
    assert current_names(copy).package == "loan_model"
    assert not (copy / "src" / old.package).exists()
    leftovers = subprocess.run(
        ["grep", "-rIl", "-e", old.package, "-e", old.project, "."], cwd=copy, capture_output=True, text=True
    )
    assert leftovers.stdout == "", f"files still naming the template: {leftovers.stdout}"
    assert 'name = "loan-model"' in (copy / "pyproject.toml").read_text()
    assert "python -m loan_model" in (copy / "Makefile").read_text()
    assert "python -m loan_model prep" in (copy / "dvc.yaml").read_text()
    assert not (copy / ".github" / "workflows" / "template-cleanup.yml").read_text().count(old.project)
    # The copy's unit tests; no file names the old package any more (checked above), so they import the new one.
    # Without this run's coverage hook (COVERAGE_PROCESS_CONFIG): it measures only mlops_template, which the copy
    # no longer has, so it recorded nothing there and only slowed every call in the copy's tests.
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("COVERAGE_", "COV_CORE_"))}
    env = {**kept, "PYTHONPATH": str(copy / "src"), "CI": os.environ.get("CI", "")}
    result = subprocess.run(
        # renaming rewrites the sources dvc.lock hashes: the lock is stale until the copy's first `make pipeline`
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/unit",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "-m",
            "not fuzz",
            "--deselect",
            "tests/unit/test_dvc_lock.py::test_every_source_dependency_in_dvc_lock_is_the_committed_file",
        ],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_rename_refuses_the_same_name_and_an_existing_target(tmp_path: Path) -> None:
    copy = copy_project(tmp_path / "copy")
    with pytest.raises(UserError, match="already named"):
        rename(copy, current_names(copy).project)
    (copy / "src" / "taken").mkdir()
    with pytest.raises(UserError, match="already exists"):
        rename(copy, "taken")
