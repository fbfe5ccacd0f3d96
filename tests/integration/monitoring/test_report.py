"""`python -m mlops_template drift`: the real bundle, the real sample generator, a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlops_template.monitoring.profile import PROFILE_FILE, load_profile
from mlops_template.pipeline.sample import write_sample

pytestmark = pytest.mark.integration


def drift(project: Path, current: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mlops_template", "drift", "--current", str(current), "--output-dir", str(output)]
    return subprocess.run([*command, *extra], cwd=project, capture_output=True, text=True, timeout=300)


def test_drifted_batch_exits_1_and_a_fresh_batch_exits_0(trained: Path, tmp_path: Path) -> None:
    drifted = write_sample(tmp_path / "drifted.csv", rows=5000, seed=7, drift=0.5)
    fresh = write_sample(tmp_path / "fresh.csv", rows=5000, seed=8, drift=0.0)

    result = drift(trained, drifted, tmp_path / "report-drifted")
    assert result.returncode == 1, result.stderr
    assert "**DRIFT**" in result.stdout and "drift: detected in" in result.stderr
    report = json.loads((tmp_path / "report-drifted" / "drift.json").read_text())
    assert report["status"] == "drift" and report["rows"] == 5000
    flagged = {i["name"] for i in report["features"] if i["drifted"]}
    assert {"loan_amount", "applicant_income"} <= flagged
    assert any(i["drifted"] for i in report["outputs"])  # the model's predictions moved too
    png = (tmp_path / "report-drifted" / "drift.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert (tmp_path / "report-drifted" / "drift.md").read_text() in result.stdout

    result = drift(trained, fresh, tmp_path / "report-fresh")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report-fresh" / "drift.json").read_text())
    assert report["status"] == "no drift"
    items = report["features"] + report["outputs"]
    # a wide margin, not a near miss: same-distribution PSI is tiny next to the threshold
    assert max(i["psi"] for i in items) < report["thresholds"]["psi_threshold"] / 4


def test_bad_input_exits_2_and_writes_nothing(trained: Path, tmp_path: Path) -> None:
    batch = write_sample(tmp_path / "batch.csv", rows=300, seed=9)
    frame = pd.read_csv(batch, dtype={"applicant_income": object})
    frame.drop(columns=["loan_amount"]).to_csv(tmp_path / "no_column.csv", index=False)
    frame.head(20).to_csv(tmp_path / "small.csv", index=False)
    frame.loc[5, "applicant_income"] = "lots"
    frame.to_csv(tmp_path / "text.csv", index=False)
    cases = {
        "missing.csv": "file not found",
        "no_column.csv": "'loan_amount'",
        "text.csv": "line(s) 7",
        "small.csv": "min_rows",
    }
    for name, message in cases.items():
        result = drift(trained, tmp_path / name, tmp_path / "out")
        assert result.returncode == 2, (name, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, name
        assert not (tmp_path / "out").exists()


def test_only_a_validated_bundle_is_used(trained: Path, tmp_path: Path) -> None:
    batch = write_sample(tmp_path / "batch.csv", rows=300, seed=9)
    result = drift(trained, batch, tmp_path / "out", "--bundle", str(trained / "artifacts" / "candidate"))
    assert result.returncode == 2 and "PENDING" in result.stderr


def test_trained_bundle_carries_a_checksummed_profile(trained: Path) -> None:
    metadata = json.loads((trained / "artifacts/model/metadata.json").read_text())
    assert PROFILE_FILE in metadata["files"]
    profile = load_profile(trained / "artifacts/model")
    assert set(profile["features"]) == {f["name"] for f in metadata["features"]}
    assert profile["outputs"]["class"]["rows"] == metadata["training_data"]["rows"]["test"]
