"""When a bundle was committed: the time of the first commit whose dvc.lock records it as the lock records it now.

A bundle holds no clock time (its bytes, and so dvc.lock, must be the same on every rebuild), so "when" comes from
git: the lock's history on the current branch (first parents), newest first, as long as the bundle's hash there
is the one in the working dvc.lock. That commit's time is when the bundle was recorded (it was trained before).
No answer (None) rather than a wrong one: outside a git checkout (an image, a Heroku build), a bundle dvc.lock
does not record, a lock not committed yet, or a shallow history that ends while the bundle is still recorded.
What builds and ships the service hands the time over as MODEL_COMMITTED_AT (the image's build argument, CD's
`make bundle-check` output, `make serve` itself in a checkout); GET /model reports it.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import yaml

LOCK = Path("dvc.lock")


def recorded_hash(lock_text: str | None, output: str) -> str | None:
    """The hash dvc.lock records for the output path `output` (as written in the lock), None when it has none."""
    try:
        stages = (yaml.safe_load(lock_text) or {}).get("stages") or {} if lock_text else {}
    except yaml.YAMLError:
        return None
    for stage in stages.values() if isinstance(stages, dict) else ():
        for out in (stage or {}).get("outs") or []:
            if isinstance(out, dict) and out.get("path") == output:
                return out.get("md5") or out.get("etag") or None
    return None


def _git(directory: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def utc_text(epoch: float) -> str:
    """A POSIX time as ISO 8601 in UTC, to the second (the MODEL_COMMITTED_AT format)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def committed_at(bundle_dir: str | Path, lock: str | Path = LOCK) -> str | None:
    """ISO 8601 UTC time of the first commit (on this branch) whose `lock` records `bundle_dir` with the hash the
    working `lock` records; None when that cannot be told (see the module's docstring)."""
    lock = Path(lock).resolve()
    if not lock.is_file():
        return None
    try:
        output = Path(bundle_dir).resolve().relative_to(lock.parent).as_posix()
    except ValueError:  # a bundle outside the project (a copy, a download): the lock does not describe it
        return None
    current = recorded_hash(lock.read_text(encoding="utf-8"), output)
    history = _git(lock.parent, "log", "--first-parent", "--format=%H %ct", "--", lock.name)
    if current is None or not history:
        return None
    found: int | None = None
    for line in history.splitlines():
        commit, _, epoch = line.partition(" ")
        if recorded_hash(_git(lock.parent, "show", f"{commit}:./{lock.name}"), output) != current:
            break
        found = int(epoch)
    else:  # every listed commit records it: the first one is the answer, unless history was cut (shallow clone)
        if found is not None and (_git(lock.parent, "rev-parse", "--is-shallow-repository") or "").strip() == "true":
            return None
    # found is None: the newest commit already records another hash (dvc.lock changed since, not committed)
    return None if found is None else utc_text(found)
