"""Shared data for the monitoring tests: the sample generator's rows and a model-free reference profile."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlops_template.core.config import DriftConfig, ProfileConfig
from mlops_template.monitoring.profile import build_profile, output_frame
from mlops_template.pipeline.sample import make_chunk
from tests.conftest import ROOT, free_port, wait_http

NUMERIC = ["applicant_income", "coapplicant_income", "loan_amount", "loan_amount_term", "credit_history"]
CATEGORICAL = ["gender", "married", "dependents", "education", "self_employed", "property_area"]
CLASSES = ["N", "Y"]
DRIFT = DriftConfig()

Firing = dict[str, set]


def loan_frame(rows: int, seed: int, drift: float = 0.0) -> pd.DataFrame:
    """Rows of the sample dataset (the generator's own code), features only."""
    return make_chunk(0, rows, seed, drift)[NUMERIC + CATEGORICAL]


def fake_outputs(frame: pd.DataFrame) -> dict[str, Any]:
    """Deterministic stand-in model outputs that depend on the inputs (so input drift shows in them)."""
    logit = frame["loan_amount"].fillna(100) / 60 - 2.5 + 2 * frame["credit_history"].fillna(0)
    score = 1 / (1 + np.exp(-logit.to_numpy()))
    proba = np.column_stack([1 - score, score])
    return output_frame("binary", CLASSES, np.where(score >= 0.5, "Y", "N"), proba)


def reference(rows: int = 8000, seed: int = 1, config: ProfileConfig | None = None) -> dict[str, Any]:
    frame = loan_frame(rows, seed)
    return build_profile(frame, NUMERIC, CATEGORICAL, "binary", CLASSES, fake_outputs(frame), config or ProfileConfig())


@contextmanager
def prometheus_with_shipped_rules(prometheus: str, target: str, tmp_path: Path) -> Iterator[Callable[[], Firing]]:
    """A real Prometheus: deploy/monitoring's config and alert rules, waits cut to seconds, scraping `target`.

    Yields a function returning the firing alerts as {alertname: {feature or output label}}.
    """
    rules = yaml.safe_load((ROOT / "deploy/monitoring/alerts.yml").read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = "2s"  # the shipped waits are minutes; the expressions are unchanged
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    config = yaml.safe_load((ROOT / "deploy/monitoring/prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config.pop("alerting")
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "mlops-service")
    job["static_configs"] = [{"targets": [target]}]
    config["scrape_configs"] = [job]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with open(tmp_path / "prometheus.log", "w") as log:
        process = subprocess.Popen(
            [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def firing() -> Firing:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=5) as response:
            alerts = json.loads(response.read())["data"]["alerts"]
        found: Firing = {}
        for alert in alerts:
            if alert["state"] == "firing":
                labels = alert["labels"]
                found.setdefault(labels["alertname"], set()).add(labels.get("feature") or labels.get("output"))
        return found

    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=60)
        yield firing
    finally:
        process.terminate()
        process.wait(timeout=20)


def wait_for(firing: Callable[[], Firing], done: Callable[[Firing], bool], timeout: float = 60) -> Firing:
    """Poll the firing alerts until `done` says so or `timeout` seconds pass; the last answer either way."""
    deadline = time.monotonic() + timeout
    while True:
        found = firing()
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(1)
