"""Deterministic loan-approval data, modelled on the course's case study, in constant memory.

Rows are made in fixed-size chunks, each from its own seed, so the file for a given (rows, seed,
drift) is byte-identical on every machine and any row count streams to disk.
`drift` (0..1) shifts the input distributions the way a new production batch might, while the
rule that decides approval stays the same (covariate shift).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mlops_template.core.fsutil import atomic_path

CHUNK_ROWS = 100_000  # part of the format: changing it changes the bytes generated
TERMS = np.array([360, 180, 480, 300, 240, 120, 84, 60, 36, 12])
TERM_P = np.array([0.83, 0.07, 0.025, 0.02, 0.015, 0.01, 0.01, 0.01, 0.005, 0.005])


def _with_missing(rng: np.random.Generator, values: np.ndarray, rate: float) -> np.ndarray:
    values = values.astype(object)
    values[rng.random(len(values)) < rate] = None
    return values


def _pick(rng: np.random.Generator, n: int, labels: list[str], p: list[float]) -> np.ndarray:
    return rng.choice(np.array(labels, dtype=object), size=n, p=np.array(p) / sum(p))


def approval_logit(frame: pd.DataFrame, true_credit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The hidden rule: credit history dominates; affordability acts through a hinge (non-linear)."""
    income = frame["applicant_income"] + frame["coapplicant_income"]
    amount = frame["loan_amount"].fillna(frame["loan_amount"].median()) * 1000
    term = frame["loan_amount_term"].fillna(360)
    burden = (amount / term) / income  # monthly instalment over monthly income
    area = frame["property_area"].map({"Semiurban": 0.7, "Urban": 0.1, "Rural": -0.4})
    return (
        -2.6
        + 3.6 * true_credit
        - 14.0 * np.clip(burden - 0.15, 0.0, None)
        + 1.2 * np.tanh(np.log(income / 5000.0))
        + 1.6 * area.to_numpy()
        + 0.7 * (frame["married"] == "Yes")
        + 0.6 * (frame["education"] == "Graduate")
        - 0.8 * (frame["self_employed"] == "Yes") * (income < 4000)
        + rng.normal(0.0, 0.3, len(frame))
    ).to_numpy(dtype=float)


def make_chunk(start: int, n: int, seed: int, drift: float) -> pd.DataFrame:
    """Rows start..start+n-1 of the dataset (a chunk is always generated from its own seed)."""
    rng = np.random.default_rng([seed, start // CHUNK_ROWS, round(drift * 1000)])
    graduate = rng.random(n) < 0.78 - 0.1 * drift
    married = rng.random(n) < 0.65
    self_employed = rng.random(n) < 0.14 + 0.1 * drift
    applicant = rng.lognormal(8.25 + 0.25 * graduate + 0.5 * drift, 0.6, n).round()
    has_co = rng.random(n) < np.where(married, 0.7, 0.25)
    coapplicant = np.where(has_co, rng.lognormal(7.4, 0.7, n), 0.0).round()
    income = applicant + coapplicant
    amount = np.clip(rng.lognormal(np.log(income * (0.028 + 0.02 * drift)), 0.45, n), 9, 700).round()
    true_credit = (rng.random(n) < 0.84 - 0.3 * drift).astype(float)
    frame = pd.DataFrame(
        {
            "loan_id": [f"LP{i:08d}" for i in range(start, start + n)],
            "gender": _with_missing(rng, _pick(rng, n, ["Male", "Female"], [0.81, 0.19]), 0.02),
            "married": _with_missing(rng, np.where(married, "Yes", "No"), 0.005),
            "dependents": _with_missing(rng, _pick(rng, n, ["0", "1", "2", "3+"], [0.58, 0.17, 0.17, 0.08]), 0.025),
            "education": np.where(graduate, "Graduate", "Not Graduate"),
            "self_employed": _with_missing(rng, np.where(self_employed, "Yes", "No"), 0.05),
            "applicant_income": applicant,
            "coapplicant_income": coapplicant,
            "loan_amount": amount,
            "loan_amount_term": rng.choice(TERMS, size=n, p=TERM_P).astype(float),
            "credit_history": true_credit.copy(),
            "property_area": _pick(
                rng, n, ["Semiurban", "Urban", "Rural"], [0.38 - 0.2 * drift, 0.33 + 0.3 * drift, 0.29]
            ),
        }
    )
    for column, rate in (("loan_amount", 0.035), ("loan_amount_term", 0.023), ("credit_history", 0.08)):
        frame.loc[rng.random(n) < rate + 0.05 * drift, column] = np.nan
    logit = approval_logit(frame, true_credit, rng)
    approved = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    frame["loan_status"] = np.where(approved, "Y", "N")
    return frame


def write_sample(path: str | Path, rows: int, seed: int = 42, drift: float = 0.0) -> Path:
    """Write `rows` rows to `path` atomically, one chunk in memory at a time."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        for start in range(0, rows, CHUNK_ROWS):
            chunk = make_chunk(start, min(CHUNK_ROWS, rows - start), seed, drift)
            chunk.to_csv(handle, index=False, header=start == 0, float_format="%.10g", lineterminator="\n")
    return path
