"""The model report: plots from dvc.yaml drawn as Mermaid, confusion counts, and the whole report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlops_template.ci.report import (
    LINE_POINTS,
    MARKER,
    build,
    confusion_table,
    mermaid_bars,
    mermaid_lines,
    plot_definitions,
)
from mlops_template.cli import main
from mlops_template.core.config import load_params
from tests.conftest import ROOT


def test_plot_definitions_come_from_dvc_yaml() -> None:
    plots = {p["name"]: p for p in plot_definitions(ROOT / "dvc.yaml")}
    assert plots["ROC"] == {
        "name": "ROC",
        "template": "simple",
        "x": "fpr",
        "y": "tpr",
        "file": "reports/plots/roc.json",
    }


def test_curves_are_resampled_on_one_grid_with_the_baseline_overlaid() -> None:
    current = [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.5, "tpr": 0.9}, {"fpr": 1.0, "tpr": 1.0}]
    baseline = [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 1.0, "tpr": 1.0}]
    chart = mermaid_lines("ROC", "fpr", "tpr", [current, baseline])
    lines = re.findall(r"line \[(.*)\]", chart)
    assert len(lines) == 2
    assert all(len(line.split(", ")) == LINE_POINTS for line in lines)
    middle = LINE_POINTS // 2
    assert float(lines[0].split(", ")[middle]) == pytest.approx(0.9)
    assert float(lines[1].split(", ")[middle]) == pytest.approx(0.5)
    assert chart.startswith("```mermaid\nxychart-beta")
    assert 'y-axis "tpr" 0.00 --> 1.00' in chart


def test_bars_keep_the_largest_values() -> None:
    records = [{"feature": f"f{i}", "importance": i / 100} for i in range(30)]
    chart = mermaid_bars("Importance", "feature", "importance", records)
    assert '"f29"' in chart
    assert '"f0"' not in chart
    assert chart.count('"f') == 15


def test_confusion_counts() -> None:
    records = [{"a": "Y", "p": "Y"}, {"a": "Y", "p": "N"}, {"a": "N", "p": "N"}, {"a": "Y", "p": "Y"}]
    assert confusion_table(records, "a", "p").splitlines()[2:] == ["| **N** | 1 | 0 |", "| **Y** | 1 | 2 |"]


def test_report_of_the_committed_pipeline_outputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(ROOT)
    text = build(load_params(ROOT / "params.yaml"), None, run_url="https://ci.invalid/run/1")
    assert text.startswith(MARKER)
    assert "### Metric gate" in text
    assert "#### ROC" in text
    assert "xychart-beta" in text
    assert "#### Residuals" not in text
    assert "[this run](https://ci.invalid/run/1)" in text
    out = tmp_path / "report.md"
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert main(["report", "--output", str(out)]) == 0
    assert out.read_text() in summary.read_text()
