"""CI: is the committed dvc.lock what this run's `dvc repro` produced?

CD ships the bundle the committed dvc.lock names, pulled from the DVC remote that CI on main pushed to. That
holds only when CI reproduces the committed lock: a pull request that changed params, code or data without the
refreshed lock, or a runner that trains other bytes than the author's machine, would leave main's lock naming
outputs nobody pushed (CD's pull fails) and main's committed metrics (the next gate's baseline) stale. So after
`dvc repro` this check fails, with one line, when dvc.lock or an output git tracks (metrics, plots, the gate
report) differs from the commit.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from mlops_template.ci.data_access import annotation
from mlops_template.core.errors import UserError

LOCK = Path("dvc.lock")
TITLE = "dvc.lock is not what this run produced"
FIX = "run `make pipeline` and commit dvc.lock"


def _stages(text: str | None) -> dict[str, Any]:
    return (yaml.safe_load(text) or {}).get("stages") or {} if text else {}


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=False)


def outputs(lock: Path) -> list[str]:
    """Every output path dvc.lock records (git ignores DVC-cached ones; metrics, plots and reports it tracks)."""
    text = lock.read_text(encoding="utf-8") if lock.is_file() else None
    return sorted({out["path"] for stage in _stages(text).values() for out in stage.get("outs") or []})


def changed_files(lock: Path) -> list[str]:
    """dvc.lock and the tracked outputs that differ from the commit (or that git does not track yet)."""
    status = _git("status", "--porcelain", "--", str(lock), *outputs(lock))
    if status.returncode != 0:
        raise UserError(f"`git status` failed: {status.stderr.strip()}; run the check inside the git checkout")
    return sorted({line[3:].strip() for line in status.stdout.splitlines() if line.strip()})


def lock_stages(lock: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """dvc.lock's stages as committed (HEAD) and as this run left them."""
    committed = _git("show", f"HEAD:./{lock.as_posix()}")
    before = _stages(committed.stdout if committed.returncode == 0 else None)
    return before, _stages(lock.read_text(encoding="utf-8") if lock.is_file() else None)


def changed_stages(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The stages whose dvc.lock entry (dependencies, params, outputs and their hashes) differs from the commit."""
    return [name for name in dict.fromkeys([*before, *after]) if before.get(name) != after.get(name)]


def message(files: list[str], stages: list[str]) -> str:
    where = f"stages {', '.join(stages)} changed; " if stages else ""
    return (
        f"{TITLE} ({where}differs: {', '.join(files)}): {FIX} and the files listed. If `make pipeline` leaves "
        "them unchanged on your machine, this runner trains other bytes: push your outputs (`make push`, with a "
        "DVC remote) so CI fetches them (`make pipeline PULL=1`) instead of retraining"
    )


def only_outputs_differ(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """The same stages, commands, params and data, other output bytes (another machine's floating point)."""
    if not before or set(before) != set(after):
        return False
    produced = {out["path"] for stage in (*before.values(), *after.values()) for out in stage.get("outs") or []}

    def inputs(stage: dict[str, Any]) -> dict[str, Any]:  # a dependency another stage produces is an output too
        deps = [dep for dep in stage.get("deps") or [] if dep.get("path") not in produced]
        return {**{k: v for k, v in stage.items() if k not in ("outs", "deps")}, "deps": deps}

    return all(inputs(before[name]) == inputs(after[name]) for name in after)


def _has_remote(remote: bool | None) -> bool:
    if remote is None:
        from mlops_template.pipeline.remote import default_remote

        return default_remote() is not None
    return remote


def check(lock: Path = LOCK, remote: bool | None = None) -> str:
    """Raise a one-line UserError (with an error annotation and a job-summary section in Actions) on a mismatch.

    Without a DVC remote a mismatch of outputs alone (the committed inputs, other bytes: another machine's
    floating point) is a warning: CD then retrains anyway, and nobody could push outputs for CI to fetch.
    """
    files = changed_files(lock)
    if not files:
        return f"{lock} and the pipeline's tracked outputs are what this run produced"
    before, after = lock_stages(lock)
    text = message(files, changed_stages(before, after))
    warn = str(lock) in files and only_outputs_differ(before, after) and not _has_remote(remote)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        print(annotation(TITLE, text, kind="warning" if warn else "error"))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(f"## {TITLE}\n\n{text}.\n\n")
    if warn:
        return f"warning (no DVC remote, same inputs, other bytes): {text}"
    raise UserError(text)
