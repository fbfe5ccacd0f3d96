"""The drift report in-process: reading the batch, the verdict, the three files written atomically, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mlops_template.core.errors import DriftDetected, UserError
from mlops_template.monitoring import report
from mlops_template.monitoring.profile import load_profile
from mlops_template.pipeline.sample import write_sample
from tests.serving_helpers import build_bundle, small_params


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a VALIDATED bundle (and its reference profile) at small_params' gate.bundle_dir."""
    directory = tmp_path_factory.mktemp("report")
    build_bundle(directory, rows=3000)
    return directory


def test_read_batch_keeps_the_features_typed_and_names_bad_input(project: Path, tmp_path: Path) -> None:
    profile = load_profile(project / "model")
    batch = pd.read_csv(write_sample(tmp_path / "b.csv", rows=50, seed=5), dtype=str, keep_default_na=False)
    frame = report.read_batch(tmp_path / "b.csv", profile)
    assert list(frame.columns) == list(profile["features"])  # ids and the target are dropped
    numeric = [n for n, e in profile["features"].items() if e["type"] == "numeric"]
    assert all(pd.api.types.is_float_dtype(frame[n]) for n in numeric)
    batch.drop(columns=["gender"]).to_csv(tmp_path / "missing.csv", index=False)
    with pytest.raises(UserError, match=r"missing\.csv: column\(s\) \['gender'\] missing; the model's features"):
        report.read_batch(tmp_path / "missing.csv", profile)
    batch.loc[4, "applicant_income"] = "lots"
    batch.to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(UserError, match=r"text\.csv.*applicant_income.*line\(s\) 6"):
        report.read_batch(tmp_path / "text.csv", profile)


def test_a_drifted_batch_writes_the_report_and_raises(project: Path, tmp_path: Path, capsys) -> None:
    params = small_params(project)
    drifted = write_sample(tmp_path / "drifted.csv", rows=2000, seed=7, drift=0.6)
    with pytest.raises(DriftDetected, match=r"drift: detected in .*loan_amount.*; see .*drift\.md"):
        report.run(params, drifted, output_dir=tmp_path / "out")
    written = json.loads((tmp_path / "out" / report.JSON_FILE).read_text())
    assert written["status"] == "drift" and written["rows"] == 2000 and written["current"] == str(drifted)
    assert written["model_version"] == json.loads((project / "model" / "metadata.json").read_text())["model_version"]
    assert (tmp_path / "out" / report.MARKDOWN_FILE).read_text() in capsys.readouterr().out
    assert (tmp_path / "out" / report.PLOT_FILE).read_bytes().startswith(b"\x89PNG")


def test_a_fresh_batch_returns_no_drift(project: Path, tmp_path: Path) -> None:
    fresh = write_sample(tmp_path / "fresh.csv", rows=2000, seed=8, drift=0.0)
    result = report.run(small_params(project), fresh, output_dir=tmp_path / "out")
    assert result["status"] == "no drift" and not result["drifted"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [report.JSON_FILE, report.MARKDOWN_FILE, report.PLOT_FILE]
    )


def test_too_few_rows_is_refused_and_leaves_the_previous_report(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / report.JSON_FILE).write_text("{}")
    small = write_sample(tmp_path / "small.csv", rows=50, seed=9)
    with pytest.raises(UserError, match=r"small\.csv: 50 rows, fewer than monitoring\.drift\.min_rows=200"):
        report.run(small_params(project), small, output_dir=out)
    assert [p.name for p in out.iterdir()] == [report.JSON_FILE] and (out / report.JSON_FILE).read_text() == "{}"
