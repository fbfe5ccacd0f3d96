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
SAMPLE_TITLE = "Pipeline run on the embedded sample"


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


def sample_markdown(access: Access) -> str:
    """The job summary of a run that uses the embedded sample in place of the remote's data."""
    return "\n".join(
        [
            "## Pipeline run on the embedded sample, not on the DVC remote's data",
            "",
            access.how + ".",
            "",
            "The pipeline, the gate and the image ran on the sample `make data SAMPLE=1` writes: they check the "
            "change works end to end; the metrics are the sample's. A run with the remote's credentials (same "
            "repository) judges the real data.",
            "",
        ]
    )


def annotation(title: str, message: str, kind: str = "notice") -> str:
    """A `::notice` (or `::error`, `::warning`) workflow command (GitHub's escaping of %, CR and LF)."""
    escaped = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return f"::{kind} title={title}::{escaped}"


def _append(variable: str, text: str) -> None:
    target = os.environ.get(variable)
    if target:
        with Path(target).open("a", encoding="utf-8") as handle:
            handle.write(text)


def report(access: Access) -> str:
    """Write `available`, `remote`, `sample` to $GITHUB_OUTPUT, a summary unless the data is there; what to print."""
    flags = {"available": access.available, "remote": access.remote, "sample": access.sample}
    _append("GITHUB_OUTPUT", "".join(f"{key}={str(value).lower()}\n" for key, value in flags.items()))
    if access.sample:
        _append("GITHUB_STEP_SUMMARY", sample_markdown(access))
        return annotation(SAMPLE_TITLE, access.how)
    if access.available:
        return f"data: available to this run: {access.how}"
    _append("GITHUB_STEP_SUMMARY", summary_markdown(access))
    return annotation(TITLE, access.how)
