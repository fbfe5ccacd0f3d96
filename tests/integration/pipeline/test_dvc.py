"""The real DVC pipeline in a temporary copy of the repository: repro, no-op repro, a fresh clone reproducing
every output byte for byte, experiments, bad data."""

import json
import sys
from pathlib import Path

import pytest
import yaml

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


def pipeline_outputs(project: Path) -> dict[str, bytes]:
    """Every file of every stage output dvc.lock lists (directories walked), by path: their bytes."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    outs = [project / out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])]
    files = [f for out in outs for f in ([out] if out.is_file() else sorted(out.rglob("*"))) if f.is_file()]
    return {f.relative_to(project).as_posix(): f.read_bytes() for f in files}


def test_fresh_clone_reproduces_every_output_and_leaves_the_lock_clean(repo: Path, tmp_path: Path):
    """Issue 11.3: the same data, params and code give the same bytes. `make pipeline` (= `data` + `dvc repro`) in a
    fresh clone of a commit with its dvc.lock re-runs every stage (no cache) in a new process (another hash seed)
    and leaves git status clean: dvc.lock, the bundle, metrics, plots and the gate report are byte-identical."""
    sh(repo, "dvc", "repro")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pipeline outputs")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    sh(clone, sys.executable, "-m", "mlops_template", "data")  # no remote: the sample, as `make data` writes it
    rerun = sh(clone, "dvc", "repro")
    for stage in ("prep", "train", "gate"):  # their outputs are in no cache: really made again
        assert f"Running stage '{stage}'" in rerun.stdout
    # evaluate's outputs are committed (cache: false) and its inputs came out the same: DVC skips it. Run it too.
    assert "Running stage 'evaluate'" not in rerun.stdout
    assert "Running stage 'evaluate'" in sh(clone, "dvc", "repro", "--force", "--single-item", "evaluate").stdout
    assert sh(clone, "git", "status", "--porcelain").stdout == ""
    assert (clone / "dvc.lock").read_bytes() == (repo / "dvc.lock").read_bytes()
    ours, theirs = pipeline_outputs(repo), pipeline_outputs(clone)
    assert {"artifacts/model/model.onnx", "artifacts/model/metadata.json", "reports/gate.md"} <= set(ours)
    assert sorted(theirs) == sorted(ours)
    assert [name for name in ours if ours[name] != theirs[name]] == []


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
