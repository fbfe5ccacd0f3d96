import json
import subprocess

import pytest

from mlops_template.core.config import Threshold
from mlops_template.core.errors import UserError
from mlops_template.pipeline.gate import baseline_metrics, judge, markdown, record_for_ci

THRESHOLDS = [Threshold(metric="roc_auc", min=0.8), Threshold(metric="log_loss", max=0.5)]


def test_thresholds_only():
    rows = judge({"roc_auc": 0.85, "log_loss": 0.4, "f1": 0.3}, THRESHOLDS, None)
    assert [r.passed for r in rows] == [True, True, None]
    rows = judge({"roc_auc": 0.79, "log_loss": 0.4}, THRESHOLDS, None)
    assert [r.metric for r in rows if r.passed is False] == ["roc_auc"]


def test_baseline_tolerance_and_direction():
    baseline = {"roc_auc": 0.86, "log_loss": 0.40}
    ok = judge({"roc_auc": 0.855, "log_loss": 0.405}, THRESHOLDS, baseline, {"default": 0.01})
    assert all(r.passed for r in ok)
    worse = judge({"roc_auc": 0.84, "log_loss": 0.42}, THRESHOLDS, baseline, {"default": 0.01})
    assert [r.passed for r in worse] == [False, False]
    per_metric = judge({"roc_auc": 0.84, "log_loss": 0.40}, THRESHOLDS, baseline, {"default": 0.0, "roc_auc": 0.05})
    assert all(r.passed for r in per_metric)
    assert per_metric[0].delta == pytest.approx(-0.02)


def test_unknown_metric_in_thresholds():
    with pytest.raises(UserError, match=r"gate.thresholds: \['rmse'\]"):
        judge({"roc_auc": 0.9}, [Threshold(metric="rmse", max=1.0)], None)


def test_markdown_table():
    rows = judge({"roc_auc": 0.85, "log_loss": 0.6}, THRESHOLDS, {"roc_auc": 0.8})
    text = markdown(rows, "REJECTED", "main (abc)")
    assert "**REJECTED**" in text and "Baseline: main (abc)" in text
    assert "| roc_auc | 0.8500 | ≥ 0.8 | 0.8000 | +0.0500 | ✅ pass |" in text
    assert "| log_loss | 0.6000 | ≤ 0.5 |  |  | ❌ fail |" in text


def test_baseline_from_file(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"roc_auc": 0.7}))
    assert baseline_metrics(str(path), tmp_path / "x.json") == ({"roc_auc": 0.7}, str(path))


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_baseline_from_git_ref(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "metrics.json").write_text(json.dumps({"roc_auc": 0.81}))
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "m")
    metrics, label = baseline_metrics("main", tmp_path / "reports" / "metrics.json")
    assert metrics == {"roc_auc": 0.81} and label.startswith("main (")
    absent, _ = baseline_metrics("main", tmp_path / "reports" / "other.json")
    assert absent is None  # a ref without metrics yet: thresholds only, not an error
    with pytest.raises(UserError, match="neither a metrics file nor a git ref"):
        baseline_metrics("no-such-branch", tmp_path / "reports" / "metrics.json")


def test_the_verdict_is_a_step_output_in_github_actions(tmp_path, monkeypatch):
    """CI's report step trusts reports/gate.md only when this run's gate wrote it (defect: a stale VALIDATED)."""
    output = tmp_path / "github_output"
    output.write_text("earlier=1\n")
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    record_for_ci("REJECTED")
    assert output.read_text() == "earlier=1\nverdict=REJECTED\n"
    monkeypatch.delenv("GITHUB_OUTPUT")
    record_for_ci("VALIDATED")  # outside Actions: nothing to write, no error
    assert output.read_text().endswith("verdict=REJECTED\n")


def test_the_report_shows_a_comparison_only_while_it_judged_the_current_metrics(tmp_path, monkeypatch):
    """`make gate BASELINE=...` writes its verdict beside the stage's report; `make report` shows it, unless the
    metrics changed since (a later `dvc repro`): then the stage's own verdict."""
    from mlops_template.core.config import load_params
    from mlops_template.pipeline.gate import comparison_paths, current_report, record_comparison
    from tests.conftest import write_params

    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    params = load_params()
    metrics = params.evaluate.metrics_path
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"roc_auc": 0.85, "log_loss": 0.4}))
    assert current_report(params) == params.gate.report_path  # no comparison yet
    rows = judge({"roc_auc": 0.85, "log_loss": 0.4}, THRESHOLDS, {"roc_auc": 0.9}, {"default": 0.01})
    written = record_comparison(params, markdown(rows, "REJECTED", "main (abc)"), "REJECTED", "main (abc)", rows)
    text_path, record_path = comparison_paths(params)
    assert written == text_path == params.gate.report_path.with_name("gate-baseline.md")
    assert json.loads(record_path.read_text())["verdict"] == "REJECTED"
    assert current_report(params) == text_path
    metrics.write_text(json.dumps({"roc_auc": 0.95, "log_loss": 0.3}))
    assert current_report(params) == params.gate.report_path
