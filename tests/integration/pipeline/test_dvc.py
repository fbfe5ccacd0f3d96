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


def test_a_gate_against_a_baseline_leaves_the_dvc_outputs_as_dvc_lock_records_them(repo: Path, tmp_path: Path):
    """CI's `make gate BASELINE=...` (and CT's gate against production) writes its verdict to reports only: the
    bundle keeps the DVC gate stage's verdict (the serving contract), byte for byte, and `dvc status` stays clean,
    so what CI on main pushes is what dvc.lock names (defect: the comparison re-wrote artifacts/model)."""
    sh(repo, "dvc", "repro")  # a no-op after the tests above
    before = pipeline_outputs(repo)
    baseline = tmp_path / "baseline-metrics.json"
    baseline.write_bytes((repo / "reports" / "metrics.json").read_bytes())
    gated = sh(repo, sys.executable, "-m", "mlops_template", "gate", "--baseline", str(baseline))
    assert "Metric gate: **VALIDATED**" in gated.stdout and f"Baseline: {baseline}" in gated.stdout
    assert pipeline_outputs(repo) == before  # the bundle, metrics, plots and reports/gate.md
    assert "Data and pipelines are up to date." in sh(repo, "dvc", "status").stdout
    comparison = (repo / "reports" / "gate-baseline.md").read_text()
    assert f"Baseline: {baseline}" in comparison and "| roc_auc |" in comparison
    assert json.loads((repo / "reports" / "gate-baseline.json").read_text())["verdict"] == "VALIDATED"
    assert "gate-baseline" not in sh(repo, "git", "status", "--porcelain").stdout  # git-ignored
    sh(repo, sys.executable, "-m", "mlops_template", "report", "--output", str(tmp_path / "report.md"))
    assert f"Baseline: {baseline}" in (tmp_path / "report.md").read_text()  # the report shows the comparison


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
