"""The raw data file: present, pulled from a DVC remote, or the embedded sample where the sample belongs.

The loan sample is written only for the sample's own `data.path` and schema (or on request), so a fork's
missing data is one clear error instead of loan rows under the fork's file name.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from mlops_template.core.config import DataConfig, Params
from mlops_template.core.errors import UserError
from mlops_template.pipeline.remote import Remote, default_remote, fetch_outputs, transfer
from mlops_template.pipeline.sample import make_chunk, write_sample

log = logging.getLogger(__name__)
SAMPLE_PATH = DataConfig.model_fields["path"].default  # the template's own data.path is the sample's file
WAYS_OUT = (
    "either configure a DVC remote and push the data (`dvc remote add -d storage <url>`, `dvc push`; "
    "README 'Adapt it to your data'), or keep small data in git (`dvc remove {dvc_file}`, `git add {path}`)"
)
NO_SECRETS = "GitHub gives pull requests from forks and Dependabot no secrets"


@dataclass(frozen=True)
class Tracking:
    """The .dvc file that records the data file (data.dvc tracks the whole data/ folder)."""

    dvc_file: Path
    out: Path
    md5: str


def tracking(path: Path) -> Tracking | None:
    """The `<x>.dvc` beside `path` or beside one of its folders that records it (DVC's naming)."""
    for out in (path, *path.parents):
        dvc_file = out.with_name(out.name + ".dvc") if out.name else None
        if dvc_file is None or not dvc_file.is_file():
            continue
        for entry in (yaml.safe_load(dvc_file.read_text(encoding="utf-8")) or {}).get("outs", []):
            if (dvc_file.parent / entry.get("path", "")).resolve() == out.resolve():
                return Tracking(dvc_file, out, str(entry.get("md5", "?")))
    return None


def sample_columns() -> list[str]:
    """The embedded sample's columns, from the generator itself (one row)."""
    return list(make_chunk(0, 1, seed=0, drift=0.0).columns)


def foreign_columns(params: Params) -> list[str]:
    """Columns params.yaml names (target, drop, numeric, categorical) that the sample does not have."""
    schema = params.schema_
    named = [schema.target, *schema.drop, *(schema.numeric or []), *(schema.categorical or [])]
    known = set(sample_columns())
    return sorted({name for name in named if name not in known})


def sample_belongs(params: Params) -> bool:
    """True when data.path is the sample's own file and the schema names only the sample's columns."""
    return Path(os.path.normpath(params.data.path)) == SAMPLE_PATH and not foreign_columns(params)


def missing(path: Path, track: Tracking | None, remote: Remote | None) -> UserError:
    """The one error for a data file this run cannot get, with the ways out."""
    if track is None:
        return UserError(
            f"{path}: not found, and no .dvc file tracks it; put your CSV there and keep it in git "
            f"(`git add {path}`), or `dvc add` it and push it to a DVC remote (README 'Adapt it to your data'); "
            "or fix data.path in params.yaml"
        )
    if remote is not None:
        return UserError(
            f"{path}: not found after `dvc pull {track.dvc_file}` from remote '{remote.name}' ({remote.url}): the "
            f"version {track.dvc_file} records ({track.out}/, md5 {track.md5}) has no such file; fix data.path in "
            f"params.yaml, or put the file there, `dvc add {track.out}` and `dvc push`"
        )
    recorded = f"{track.dvc_file} tracks it ({track.out}/, md5 {track.md5})"
    return UserError(
        f"{path}: not found. {recorded}, but this clone has no DVC remote to pull it from, and the embedded "
        f"loan sample is written only for its own data.path ({SAMPLE_PATH}) and schema; "
        + WAYS_OUT.format(dvc_file=track.dvc_file, path=path)
        + ". `make data SAMPLE=1` writes the loan sample there on purpose"
    )


def pull(track: Tracking, remote: Remote) -> None:
    """`dvc pull <x>.dvc` from the default remote (one clear line when it fails)."""
    transfer("pull", str(track.dvc_file), remote=remote)


def ensure(params: Params, sample: bool = False, outputs: bool = False) -> Path:
    """Make data.path exist: `dvc pull` when a remote is set, else keep it, else the sample where it belongs.
    `outputs`: with a remote, also fetch the pipeline outputs and run-cache it has (see remote.fetch_outputs)."""
    path = params.data.path
    track = tracking(path)
    remote = default_remote() if track is not None and not sample else None
    if remote is not None:
        pull(track, remote)
        if outputs:
            fetch_outputs(remote)
    if path.is_file():
        log.info("data: %s present", path)
        return path
    if not (sample or sample_belongs(params)):
        raise missing(path, track, remote)
    if not sample_belongs(params):
        log.warning(
            "data: writing the embedded LOAN sample to %s on request (SAMPLE=1): it is not your data; "
            "params.yaml names columns it lacks: %s",
            path,
            ", ".join(foreign_columns(params)),
        )
    config = params.data.sample
    write_sample(path, config.rows, config.seed, config.drift)
    log.info("data: the embedded sample (%d rows, seed %d) -> %s", config.rows, config.seed, path)
    return path


@dataclass(frozen=True)
class Access:
    """Whether a CI run can get the data, and where from or why not.

    `remote`: the run pulls from (and, on main, pushes to) the DVC remote. `sample`: the remote needs credentials
    this run lacks, and data.path is the embedded sample's own, so the run uses the sample instead (SAMPLE=1).
    """

    available: bool
    how: str
    remote: bool = False
    sample: bool = False


def access(params: Params, secrets: bool = True) -> Access:
    """Can this run get data.path? `secrets`: False on fork and Dependabot pull requests (no remote credentials)."""
    path = params.data.path
    track = tracking(path)
    remote = default_remote()
    where = f"the DVC remote '{remote.name}' ({remote.url})" if remote else ""
    if remote is not None and secrets and (path.is_file() or track is not None):
        how = f"{path} is in the checkout" if path.is_file() else f"`dvc pull {track.dvc_file}` from {where}"
        return Access(True, how, remote=True)
    if path.is_file():
        return Access(True, f"{path} is in the checkout")
    if sample_belongs(params):
        if remote is not None and track is not None:  # no credentials for the remote: the sample stands in
            why = f"{where} needs credentials: {NO_SECRETS}"
            return Access(
                True, f"{path} is the embedded sample on this run, not the remote's data ({why})", sample=True
            )
        return Access(True, f"{path} is the embedded sample (data.path and schema are the sample's own)")
    if track is None:
        raise missing(path, None, None)
    recorded = f"{track.dvc_file} tracks {path} (md5 {track.md5})"
    if remote is None:
        reason = "no DVC remote is configured, so no fresh clone, this runner included, can get it"
        return Access(False, f"{recorded} but {reason}")
    return Access(False, f"{recorded} on {where}, which needs credentials: {NO_SECRETS}")
