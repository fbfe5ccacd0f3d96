"""Test results (JUnit XML) and coverage (Cobertura XML) as markdown for the CI job summary."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from mlops_template.core.errors import UserError
from mlops_template.core.fsutil import write_text

MAX_FAILURES = 20  # the summary shows the first ones; the XML artifact has all


def _parse(path: Path, what: str) -> ET.Element:
    if not path.is_file():
        raise UserError(f"{path}: {what} not found; run `make test` first")
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise UserError(f"{path}: not valid XML ({exc}); rerun `make test`") from None


def junit_markdown(path: Path) -> str:
    root = _parse(path, "JUnit report")
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    totals = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    seconds = sum(float(s.get("time", 0)) for s in suites)
    passed = totals["tests"] - totals["failures"] - totals["errors"] - totals["skipped"]
    icon = "❌" if totals["failures"] or totals["errors"] else "✅"
    lines = [
        f"### {icon} Tests",
        "",
        "| passed | failed | errors | skipped | time |",
        "|---:|---:|---:|---:|---:|",
        f"| {passed} | {totals['failures']} | {totals['errors']} | {totals['skipped']} | {seconds:.1f} s |",
    ]
    broken = [(case, bad) for case in root.iter("testcase") for bad in case if bad.tag in {"failure", "error"}]
    if broken:
        lines += ["", "| test | message |", "|---|---|"]
        for case, bad in broken[:MAX_FAILURES]:
            message = (bad.get("message") or "").splitlines()[0][:200].replace("|", "\\|") if bad.get("message") else ""
            lines.append(f"| `{case.get('classname')}::{case.get('name')}` | {message} |")
        if len(broken) > MAX_FAILURES:
            lines.append(f"| … {len(broken) - MAX_FAILURES} more in the junit.xml artifact | |")
    return "\n".join(lines)


def coverage_markdown(path: Path, lowest: int = 10) -> str:
    root = _parse(path, "coverage report")
    total = float(root.get("line-rate", 0)) * 100
    files = sorted((float(c.get("line-rate", 0)) * 100, c.get("filename", "?")) for c in root.iter("class"))
    lines = [f"### Coverage: {total:.1f}%", "", "| file | lines covered |", "|---|---:|"]
    lines += [f"| `{name}` | {rate:.1f}% |" for rate, name in files[:lowest]]
    return "\n".join(lines)


def run(junit: Path, coverage: Path, output: Path) -> str:
    text = junit_markdown(junit) + "\n\n" + coverage_markdown(coverage) + "\n"
    write_text(output, text)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text)
    return text
