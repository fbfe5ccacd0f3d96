"""The production model scored on the new model's holdout: the CT gate compares the two on the same rows.

The production bundle is the one the gate recorded in dvc.lock at the baseline ref (main: what CD deployed),
fetched with `dvc get` from this clone's DVC cache or the DVC remote. Each model's metrics stored at its own
training time were measured on different test rows; scored here, both are measured on the same fresh rows.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlops_template.core.bundle import load_bundle
from mlops_template.core.config import Params
from mlops_template.core.errors import UserError, one_line
from mlops_template.pipeline.evaluate import compute
from mlops_template.pipeline.prep import load_prepared
from mlops_template.pipeline.remote import DVC

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """The production model's metrics on the holdout, and what they were measured on."""

    version: str
    ref: str
    rows: int
    metrics: dict[str, float]

    @property
    def label(self) -> str:
        return (
            f"the production model {self.version} (gated bundle at {self.ref}) scored on the same {self.rows} "
            "holdout rows as the new model"
        )


def fetch_bundle(ref: str, bundle_dir: Path, target: Path) -> str | None:
    """`dvc get` the bundle recorded at `ref` into `target`: None when done, else why not (one line)."""
    result = subprocess.run(
        [*DVC, "get", ".", bundle_dir.as_posix(), "--rev", ref, "-o", str(target), "--force"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 0:
        return None
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")] or [result.stderr.strip()]
    return f"`dvc get . {bundle_dir} --rev {ref}` failed: {one_line(Exception(errors[0]))}"


def score(bundle_dir: Path, params: Params) -> tuple[str, int, dict[str, float]]:
    """The bundle's quality metrics on the holdout `prep` wrote (version, rows, metrics)."""
    bundle = load_bundle(bundle_dir)
    frame, schema, _ = load_prepared(params.prep.output_dir, "test")
    features = bundle.metadata.feature_names
    absent = [name for name in features if name not in frame.columns]
    if absent:
        raise UserError(f"{bundle_dir}: the production model needs columns the new data lacks: {absent}")
    metrics, _ = compute(bundle.model, bundle.metadata, frame[features], frame[schema.target], params, importance=False)
    return bundle.version, len(frame), metrics


def production(params: Params, ref: str) -> Scored | str:
    """The production model at `ref` scored on this run's holdout, or why it cannot be (one line)."""
    with tempfile.TemporaryDirectory(prefix="production-bundle-") as tmp:
        target = Path(tmp) / "bundle"
        problem = fetch_bundle(ref, params.gate.bundle_dir, target)
        if problem:
            return problem
        try:
            version, rows, metrics = score(target, params)
        except UserError as exc:
            return f"the production bundle at {ref} cannot score the holdout: {exc}"
    return Scored(version, ref, rows, metrics)
