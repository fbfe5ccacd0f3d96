"""CT's gate: the new model against the production model, both scored on the same fresh holdout.

The production model is the gated bundle dvc.lock records at the baseline ref (what CD deployed from main),
fetched from this clone's DVC cache or the DVC remote. When PRODUCTION_URL serves another version, or the
bundle cannot be fetched (no remote and not cached) or cannot score the holdout, the gate falls back to stored
metrics (the service's /model, else the ref's metrics.json), measured on other rows: the gate report says so.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mlops_template.ci.smoke import fetch_metrics, served_version
from mlops_template.core.config import Params
from mlops_template.core.fsutil import write_text
from mlops_template.pipeline import gate
from mlops_template.pipeline.challenger import Scored, production

log = logging.getLogger(__name__)
OTHER_ROWS = "stored metrics, measured on that model's own test split at training time (other rows)"


def run(params: Params, ref: str, url: str | None, output: Path) -> str:
    """Score the production model on the holdout and gate on the comparison (or fall back); returns the verdict."""
    scored = production(params, ref)
    if isinstance(scored, Scored) and url:
        serving = served_version(url)
        if serving != scored.version:
            scored = f"{url} serves model {serving}, not {scored.version} (the bundle at {ref})"
    if isinstance(scored, Scored):
        write_text(output, json.dumps(scored.metrics, indent=2) + "\n")
        log.info("challenger: %s", scored.label)
        return gate.run(params, str(output), label=scored.label)
    log.warning("challenger: no same-holdout comparison: %s", scored)
    if url:
        fetch_metrics(url, output)
        return gate.run(params, str(output), label=f"the model at {url}: {OTHER_ROWS}. Why: {scored}")
    return gate.run(params, ref, label=f"{ref}'s committed metrics: {OTHER_ROWS}. Why: {scored}")
