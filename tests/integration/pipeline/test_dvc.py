"""The real DVC pipeline in a temporary copy of the repository: repro, no-op repro, experiments, bad data."""

import json
from pathlib import Path

import pytest

from tests.conftest import dvc_project_copy, sh

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone-like copy: tracked files only, its own git history, a small sample dataset."""
    copy = tmp_path_factory.mktemp("repo")
    dvc_project_copy(copy)
    return copy


def test_repro_then_noop(repo: Path):
    first = sh(repo, "dvc", "repro")
    for stage in ("prep", "train", "evaluate", "gate"):
        assert f"Running stage '{stage}'" in first.stdout
    assert (repo / "artifacts" / "model" / "metadata.json").is_file()
    metrics = json.loads(sh(repo, "dvc", "metrics", "show", "--json").stdout)
    assert metrics  # dvc reads the metrics file declared in dvc.yaml
    second = sh(repo, "dvc", "repro")
    assert "Running stage" not in second.stdout
    assert "up to date" in sh(repo, "dvc", "status").stdout
    rendered = sh(repo, "dvc", "plots", "show", "--json")
    assert "roc.json" in rendered.stdout and "confusion.json" in rendered.stdout


def test_experiment_with_set_param(repo: Path):
    sh(repo, "dvc", "repro")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline", check=False)
    sh(repo, "dvc", "exp", "run", "-S", "train.estimator=logistic_regression", "-S", "train.logistic_regression.C=0.5")
    shown = sh(repo, "dvc", "exp", "show", "--json").stdout
    assert "logistic_regression" in shown and "roc_auc" in shown


def test_bad_data_fails_and_keeps_the_bundle(repo: Path):
    sh(repo, "dvc", "repro")
    model = repo / "artifacts" / "model"
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    csv = repo / "data" / "loans.csv"
    original = csv.read_bytes()
    try:
        lines = original.decode().splitlines()
        cells = lines[5].split(",")
        cells[6] = "lots"  # applicant_income
        lines[5] = ",".join(cells)
        csv.write_text("\n".join(lines) + "\n")
        result = sh(repo, "dvc", "repro", check=False)
        assert result.returncode != 0
        assert "column 'applicant_income' is numeric but has text at line(s) 6" in result.stderr + result.stdout
        assert "Traceback" not in result.stderr
        assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    finally:
        csv.write_bytes(original)
