"""Shared data for the monitoring tests: the sample generator's rows and a model-free reference profile."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlops_template.config import DriftConfig, ProfileConfig
from mlops_template.monitoring.profile import build_profile, output_frame
from mlops_template.sample import make_chunk

NUMERIC = ["applicant_income", "coapplicant_income", "loan_amount", "loan_amount_term", "credit_history"]
CATEGORICAL = ["gender", "married", "dependents", "education", "self_employed", "property_area"]
CLASSES = ["N", "Y"]
DRIFT = DriftConfig()


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
