"""The CI data step: `available` for the jobs that need the data; when false, a notice and a summary that say why."""

from pathlib import Path

import pytest

from mlops_template.ci.data_access import annotation, report
from mlops_template.pipeline.rawdata import Access


@pytest.fixture
def github_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    output, summary = tmp_path / "output", tmp_path / "summary"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return output, summary


def test_unavailable_reports_not_run_with_the_reason(github_files):
    output, summary = github_files
    printed = report(Access(False, "data.dvc tracks data/d.csv (md5 abc) but no DVC remote is configured"))
    assert output.read_text() == "available=false\nremote=false\nsample=false\n"
    text = summary.read_text()
    assert "no DVC remote is configured" in text
    assert "| gate | **not run** (not a pass: no model was judged) |" in text
    assert "pipeline (prep → train → evaluate) | not run" in text
    assert printed.startswith("::notice title=Pipeline and gate not run: no data::data.dvc tracks data/d.csv")


def test_available_writes_only_the_output(github_files):
    output, summary = github_files
    assert "the embedded sample" in report(Access(True, "data/loans.csv is the embedded sample"))
    assert output.read_text() == "available=true\nremote=false\nsample=false\n"
    assert not summary.exists()


def test_the_sample_standing_in_for_the_remote_is_announced(github_files):
    output, summary = github_files
    printed = report(Access(True, "data/loans.csv is the embedded sample on this run", sample=True))
    assert output.read_text() == "available=true\nremote=false\nsample=true\n"
    assert "## Pipeline run on the embedded sample, not on the DVC remote's data" in summary.read_text()
    assert printed.startswith("::notice title=Pipeline run on the embedded sample::data/loans.csv")


def test_outside_github_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert report(Access(False, "why")).endswith("::why")
    assert list(tmp_path.iterdir()) == []


def test_annotation_escapes_what_github_would_read_as_commands():
    assert annotation("T", "100% sure\nnext") == "::notice title=T::100%25 sure%0Anext"
