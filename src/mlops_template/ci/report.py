"""The pull-request report: gate verdict and table, changed params, and the DVC plots drawn as Mermaid charts.

GitHub renders Mermaid in comments and job summaries, so the plots appear inline without an image host;
the interactive `dvc plots diff` HTML goes along as a CI artifact (linked when a run URL is given).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mlops_template.core.bundle import METADATA
from mlops_template.core.config import Params
from mlops_template.core.errors import UserError
from mlops_template.core.fsutil import sha256_file, write_text
from mlops_template.pipeline.gate import current_report
from mlops_template.pipeline.rawdata import tracking
from mlops_template.pipeline.refresh import RECORD, read_record

log = logging.getLogger(__name__)
MARKER = "<!-- mlops-template:report -->"  # finds the comment to update in place
LINE_POINTS = 21  # a resampled curve: enough to see its shape, small enough for a comment
TOP_BARS = 15


def plot_definitions(dvc_yaml: Path = Path("dvc.yaml")) -> list[dict[str, Any]]:
    """The top-level `plots:` of dvc.yaml as [{name, template, x, y_field, file}] (what `dvc plots` draws)."""
    if not dvc_yaml.is_file():
        raise UserError(f"{dvc_yaml}: not found; run from the project root")
    plots = (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("plots") or []
    found = []
    for entry in plots:
        if not isinstance(entry, dict):
            continue  # a bare path: no x/y to draw from
        for name, spec in entry.items():
            for file, field in (spec.get("y") or {}).items():
                found.append(
                    {
                        "name": name,
                        "template": spec.get("template", "linear"),
                        "x": spec.get("x"),
                        "y": field,
                        "file": file,
                    }
                )
    return found


def git_show_json(rev: str, path: str) -> Any | None:
    """A JSON file as committed at `rev`, or None when it is not there."""
    shown = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def _curve(records: list[dict], x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    xs = np.array([float(r[x]) for r in records])
    ys = np.array([float(r[y]) for r in records])
    order = np.argsort(xs, kind="stable")
    return xs[order], ys[order]


def mermaid_lines(title: str, x: str, y: str, series: list[list[dict]]) -> str:
    """Curves resampled on a shared evenly spaced x grid: Mermaid's xychart has category x-axes only."""
    curves = [_curve(s, x, y) for s in series]
    lo = min(c[0].min() for c in curves)
    hi = max(c[0].max() for c in curves)
    grid = np.linspace(lo, hi, LINE_POINTS)
    ys = [np.interp(grid, cx, cy) for cx, cy in curves]
    y_lo = min(0.0, min(float(v.min()) for v in ys))
    y_hi = max(float(v.max()) for v in ys)
    y_hi = 1.0 if 0 < y_hi <= 1 else y_hi  # probabilities and rates: the whole 0..1 scale
    lines = [
        "```mermaid",
        "xychart-beta",
        f'    title "{title}"',
        f'    x-axis "{x}" [{", ".join(f"{g:.2f}" for g in grid)}]',
        f'    y-axis "{y}" {y_lo:.2f} --> {y_hi:.2f}',
    ]
    lines += [f"    line [{', '.join(f'{v:.4f}' for v in values)}]" for values in ys]
    return "\n".join([*lines, "```"])


def mermaid_bars(title: str, label: str, value: str, records: list[dict]) -> str:
    top = sorted(records, key=lambda r: float(r[value]), reverse=True)[:TOP_BARS]
    names = ", ".join(json.dumps(str(r[label])) for r in top)
    return "\n".join(
        [
            "```mermaid",
            "xychart-beta horizontal",
            f'    title "{title}"',
            f"    x-axis [{names}]",
            f'    y-axis "{value}"',
            f"    bar [{', '.join(f'{float(r[value]):.4f}' for r in top)}]",
            "```",
        ]
    )


def confusion_table(records: list[dict], actual: str, predicted: str) -> str:
    counts = Counter((str(r[actual]), str(r[predicted])) for r in records)
    labels = sorted({a for a, _ in counts} | {p for _, p in counts})
    head = f"| {actual} \\ {predicted} | " + " | ".join(labels) + " |"
    rows = [f"| **{a}** | " + " | ".join(str(counts.get((a, p), 0)) for p in labels) + " |" for a in labels]
    return "\n".join([head, "|---|" + "---:|" * len(labels), *rows])


def render_plot(plot: dict[str, Any], current: list[dict], baseline: list[dict] | None) -> str:
    """One plot as markdown; line plots overlay the baseline curve when there is one."""
    template, x, y = plot["template"], plot["x"], plot["y"]
    if template in {"simple", "linear", "smooth"}:
        series = [current] + ([baseline] if baseline else [])
        legend = "first line: this commit" + ("; second line: baseline" if baseline else "")
        return mermaid_lines(plot["name"], x, y, series) + f"\n\n<sub>{legend}</sub>"
    if template.startswith("bar"):
        label, value = (y, x) if template == "bar_horizontal" else (x, y)
        return mermaid_bars(plot["name"], label, value, current)
    if template == "confusion":
        return confusion_table(current, x, y)
    return f"_{plot['name']}: `{template}` plot, see the HTML artifact._"


def params_diff(baseline: str) -> str:
    """`dvc params diff <baseline> --md`, or a note when DVC cannot compare."""
    # `python -m dvc`: the DVC of this environment, whatever PATH says
    diff = subprocess.run(
        [sys.executable, "-m", "dvc", "params", "diff", baseline, "--md"], capture_output=True, text=True
    )
    if diff.returncode != 0:
        log.warning("report: dvc params diff %s failed: %s", baseline, diff.stderr.strip())
        return f"_could not compare params with {baseline}: {diff.stderr.strip().splitlines()[-1:] or ['?']}_"
    rows = [line for line in diff.stdout.splitlines() if line.startswith("|")]
    return diff.stdout.strip() if len(rows) > 2 else "_no parameter changed_"  # header + rule = no change


def mlflow_run(params: Params) -> str | None:
    """A line linking this pipeline's MLflow run (written by the gate when tracking is on), else None."""
    path, candidate = params.tracking.run_file, params.train.output_dir / METADATA
    if not path.is_file() or not candidate.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("candidate_sha256") != sha256_file(candidate):
        return None  # left over from an earlier pipeline run
    run = f"[{record['run_id']}]({record['url']})" if record.get("url") else f"`{record['run_id']}`"
    line = f"MLflow run: {run} ({record.get('verdict')})"
    if record.get("registered_version"):
        line += f"; registered as `{record['registered_model']}` version {record['registered_version']} (`challenger`)"
    return line


def data_refresh(params: Params, record: Path = RECORD) -> str | None:
    """A line on the data this run refreshed (rows and data.dvc hash before/after), else None."""
    refreshed, track = read_record(record), tracking(params.data.path)
    if refreshed is None or track is None or refreshed.md5_after != track.md5:
        return None  # no refresh in this run, or one whose data has been replaced since
    before = "unknown" if refreshed.rows_before is None else str(refreshed.rows_before)
    changed = "unchanged" if refreshed.md5_before == refreshed.md5_after else f"was `{refreshed.md5_before}`"
    return (
        f"Data refreshed from `{refreshed.source}`: **{refreshed.rows_after} rows** in `{refreshed.path}` "
        f"(before: {before}); DVC hash `{refreshed.md5_after}` ({changed})"
    )


def build(params: Params, baseline: str | None, run_url: str | None = None, title: str = "Model report") -> str:
    gate_path = current_report(params)  # this run's comparison against the baseline, else the stage's verdict
    if not gate_path.is_file():
        raise UserError(f"{gate_path}: not found; run `make pipeline` (and `make gate BASELINE=...`) first")
    parts = [MARKER, f"## {title}", "", gate_path.read_text(encoding="utf-8").strip(), ""]
    refreshed = data_refresh(params)
    if refreshed:
        parts += ["### Data", "", refreshed, ""]
    tracked = mlflow_run(params)
    if tracked:
        parts += [tracked, ""]
    if baseline:
        parts += [f"### Parameters changed vs `{baseline}`", "", params_diff(baseline), ""]
    parts += ["### Plots", ""]
    for plot in plot_definitions():
        path = Path(plot["file"])
        if not path.is_file():
            continue  # a plot of another task type (e.g. residuals for a classifier)
        current = json.loads(path.read_text(encoding="utf-8"))
        base = git_show_json(baseline, plot["file"]) if baseline else None
        parts += [f"#### {plot['name']}", "", render_plot(plot, current, base), ""]
    if run_url:
        parts += [f"Interactive plots (`dvc plots diff`, HTML): artifact **plots-html** of [this run]({run_url}).", ""]
    return "\n".join(parts)


def run(
    params: Params, baseline: str | None, output: Path, run_url: str | None = None, title: str = "Model report"
) -> str:
    """Write the report; append it to the GitHub job summary when running in Actions."""
    text = build(params, baseline, run_url, title)
    write_text(output, text)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    log.info("report: %s%s", output, " (+ job summary)" if summary else "")
    return text
