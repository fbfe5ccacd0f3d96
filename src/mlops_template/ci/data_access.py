"""CI: can this run get the data? `available=true|false` for the jobs that need it, and why not, visibly.

GitHub Actions has no neutral job conclusion, and the Checks API's `neutral` needs `checks: write`, which
fork and Dependabot pull requests never get. So a run without the data skips the jobs that need it (the
pull request lists them as "Skipped", never as passed) and this step says why: a notice annotation on the
run and a job summary that reports the pipeline and the gate as "not run".
"""

from __future__ import annotations

import os
from pathlib import Path

from mlops_template.pipeline.rawdata import Access

TITLE = "Pipeline and gate not run: no data"


def summary_markdown(access: Access) -> str:
    """The job summary of a run without the data: what did not run, why, and the ways out."""
    return "\n".join(
        [
            "## Data not available to this run: pipeline and gate not run",
            "",
            access.how + ".",
            "",
            "| step | result |",
            "|---|---|",
            "| pipeline (prep → train → evaluate) | not run |",
            "| gate | **not run** (not a pass: no model was judged) |",
            "| image | not run |",
            "",
            "Lint and tests ran as usual. To run the pipeline and the gate on every pull request, configure a DVC "
            'remote and its credentials, or keep small data in git (README "Adapt it to your data").',
            "",
        ]
    )


def annotation(title: str, message: str) -> str:
    """A `::notice` workflow command (GitHub's escaping of %, CR and LF)."""
    escaped = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return f"::notice title={title}::{escaped}"


def _append(variable: str, text: str) -> None:
    target = os.environ.get(variable)
    if target:
        with Path(target).open("a", encoding="utf-8") as handle:
            handle.write(text)


def report(access: Access) -> str:
    """Write `available` to $GITHUB_OUTPUT, and the summary when unavailable; return what to print."""
    _append("GITHUB_OUTPUT", f"available={str(access.available).lower()}\n")
    if access.available:
        return f"data: available to this run: {access.how}"
    _append("GITHUB_STEP_SUMMARY", summary_markdown(access))
    return annotation(TITLE, access.how)
