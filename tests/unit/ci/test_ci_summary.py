"""JUnit and Cobertura XML to the markdown job summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_template.ci.ci_summary import coverage_markdown, junit_markdown, run
from mlops_template.core.errors import UserError

JUNIT = """<?xml version="1.0"?><testsuites>
<testsuite name="pytest" tests="4" failures="1" errors="0" skipped="1" time="2.5">
<testcase classname="tests.unit.test_a" name="test_ok"/>
<testcase classname="tests.unit.test_a" name="test_bad">
<failure message="assert 1 == 2 | pipe">trace</failure></testcase>
<testcase classname="tests.unit.test_a" name="test_skip"><skipped/></testcase>
<testcase classname="tests.unit.test_b" name="test_ok"/></testsuite></testsuites>"""
COVERAGE = """<?xml version="1.0"?><coverage line-rate="0.9">
<packages><package><classes>
<class filename="src/a.py" line-rate="0.5"/><class filename="src/b.py" line-rate="1"/>
</classes></package></packages></coverage>"""


def test_counts_and_failures(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text(JUNIT)
    text = junit_markdown(tmp_path / "junit.xml")
    assert "| 2 | 1 | 0 | 1 | 2.5 s |" in text
    assert text.startswith("### ❌")
    assert "`tests.unit.test_a::test_bad` | assert 1 == 2 \\| pipe |" in text


def test_coverage_lists_the_least_covered_first(tmp_path: Path) -> None:
    (tmp_path / "coverage.xml").write_text(COVERAGE)
    text = coverage_markdown(tmp_path / "coverage.xml")
    assert text.startswith("### Coverage: 90.0%")
    assert text.index("src/a.py") < text.index("src/b.py")


def test_writes_the_job_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "junit.xml").write_text(JUNIT)
    (tmp_path / "coverage.xml").write_text(COVERAGE)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    text = run(tmp_path / "junit.xml", tmp_path / "coverage.xml", tmp_path / "out.md")
    assert summary.read_text() == "earlier step\n" + text == "earlier step\n" + (tmp_path / "out.md").read_text()


def test_missing_or_broken_reports_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="run `make test` first"):
        junit_markdown(tmp_path / "none.xml")
    (tmp_path / "bad.xml").write_text("<testsuites")
    with pytest.raises(UserError, match="not valid XML"):
        junit_markdown(tmp_path / "bad.xml")
