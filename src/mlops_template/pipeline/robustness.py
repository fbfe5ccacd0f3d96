"""Model security figures for the gate: evasion robustness and membership-inference leakage.

Evasion: a black-box bounded perturbation search. For a seeded sample of test rows it moves the numeric
features only (categoricals are left alone), inside each feature's training range, by a budget measured in
L-inf over that range: the corner that a finite-difference estimate of the model's slope points to (against
the predicted class, or up the error for regressors) plus random corners and interior points, all rows and
candidates scored in one model call per budget. From the smallest budget that flips each row:
`adversarial_accuracy`, the accuracy left when an attacker may move every numeric feature by `budget` of its
range, and `median_flip_distance`, the median size of the smallest flip found (rows not flipped within the
largest budget tried count as 1.0). Regressors: `mae_under_attack`, the mean of the worst absolute error found
within `budget`. (ART's HopSkipJump was tried first: on the sample model it needed over ten minutes for 60 rows,
against this search's seconds, because it queries the model a few rows at a time.)

Membership inference: the loss-threshold attack (Yeom et al., "Privacy risk in machine learning", 2018):
a row's score is the model's probability for its true label (regression: minus its squared error), and
`membership_auc` is the ROC-AUC of that score between training rows and test rows: 0.5 means the model treats
rows it learned from like new ones; an overfit model scores its training rows higher and leaks membership.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from mlops_template.core.config import RobustnessConfig

log = logging.getLogger(__name__)
BUDGETS = np.round(np.linspace(0.0, 0.3, 13), 3)  # the robustness plot: accuracy left at each budget


def membership_auc(model: Any, task: str, train: tuple[pd.DataFrame, pd.Series], test: tuple[pd.DataFrame, pd.Series],
                   rows: int, seed: int) -> float:  # fmt: skip
    """ROC-AUC of the loss-threshold attack between (a sample of) training rows and test rows."""
    scores, members = [], []
    for (x, y), member in ((train, 1), (test, 0)):
        sample = x.sample(min(rows, len(x)), random_state=seed)
        truth = y.loc[sample.index]
        if task == "regression":
            score = -((model.predict(sample) - truth.to_numpy(dtype=float)) ** 2)
        else:
            proba = model.predict_proba(sample)
            column = {label: i for i, label in enumerate(map(str, model.classes_))}
            score = proba[np.arange(len(sample)), [column[str(label)] for label in truth]]
        scores.append(np.asarray(score, dtype=float))
        members.append(np.full(len(sample), member))
    return float(roc_auc_score(np.concatenate(members), np.concatenate(scores)))


def _candidates(scaled: np.ndarray, slope: np.ndarray, tries: int, rng: np.random.Generator) -> np.ndarray:
    """Unit directions per row, [rows, tries, features]: the slope's corner, random corners, random points."""
    rows, features = scaled.shape
    corners = rng.choice([-1.0, 1.0], size=(rows, tries // 2, features))
    points = rng.uniform(-1.0, 1.0, size=(rows, tries - tries // 2 - 1, features))
    return np.concatenate([-np.sign(slope)[:, None, :], corners, points], axis=1)


def _score(model: Any, x: pd.DataFrame, numeric: list[str], values: np.ndarray, task: str) -> np.ndarray:
    """The model's output for every row of x repeated with numeric values [rows, tries, features]."""
    rows, tries, _ = values.shape
    frame = x.iloc[np.repeat(np.arange(rows), tries)].reset_index(drop=True)
    frame[numeric] = values.reshape(rows * tries, -1)
    out = model.predict(frame) if task == "regression" else model.predict_proba(frame)
    return np.asarray(out).reshape(rows, tries, -1)


def _slope(model: Any, x: pd.DataFrame, numeric: list[str], low: np.ndarray, span: np.ndarray, target: Any,
           task: str) -> np.ndarray:  # fmt: skip
    """Finite-difference slope of the attacked quantity (true-class probability, or minus the error) per feature."""
    base = x[numeric].to_numpy(dtype=float)
    step = np.eye(len(numeric)) * 0.01 * span
    values = np.concatenate([np.clip(base[:, None, :] + step, low, low + span),
                             np.clip(base[:, None, :] - step, low, low + span)], axis=1)  # fmt: skip
    out = _score(model, x, numeric, values, task)
    if task == "regression":
        quantity = -np.abs(out[..., 0] - target[:, None])
    else:
        quantity = np.take_along_axis(out, np.broadcast_to(target[:, None, None], (*out.shape[:2], 1)), axis=2)[..., 0]
    up, down = quantity[:, : len(numeric)], quantity[:, len(numeric) :]
    return up - down


def search(model: Any, x: pd.DataFrame, y: pd.Series, numeric: list[str], ranges: dict[str, tuple[float, float]],
           task: str, config: RobustnessConfig) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per row: the smallest budget on the grid that flips the prediction (inf: none), and the worst error at
    `config.budget` (regressors; NaN for classifiers)."""
    rng = np.random.default_rng(config.seed)
    low = np.array([ranges[name][0] for name in numeric], dtype=float)
    span = np.array([max(ranges[name][1] - ranges[name][0], 1e-12) for name in numeric], dtype=float)
    base = x[numeric].to_numpy(dtype=float)
    if task == "regression":
        target = y.to_numpy(dtype=float)
    else:
        column = {str(label): i for i, label in enumerate(model.classes_)}
        target = np.array([column[str(label)] for label in model.predict(x)])
    directions = _candidates(base, _slope(model, x, numeric, low, span, target, task), config.tries, rng)
    flips, worst = np.full(len(x), np.inf), np.full(len(x), np.nan)
    for budget in sorted({*BUDGETS[1:].tolist(), config.budget}):
        values = np.clip(base[:, None, :] + budget * directions * span, low, low + span)
        out = _score(model, x, numeric, values, task)
        if task == "regression":
            if budget == config.budget:
                worst = np.max(np.abs(out[..., 0] - target[:, None]), axis=1)
            continue
        flipped = (out.argmax(axis=2) != target[:, None]).any(axis=1)
        flips[flipped & np.isinf(flips)] = budget
    return flips, worst


Split = tuple[pd.DataFrame, pd.Series]


def evaluate(
    model: Any, task: str, ranges: dict[str, tuple[float, float]], test: Split, train: Split, config: RobustnessConfig
) -> tuple[dict[str, float], list[dict]]:
    """The security metrics and the robustness plot's records (empty when switched off or not applicable).

    `ranges`: the training range of each numeric feature (the bundle's metadata), the space the attack moves in.
    """
    metrics: dict[str, float] = {}
    records: list[dict] = []
    if config.membership:
        metrics["membership_auc"] = membership_auc(model, task, train, test, config.membership_rows, config.seed)
    numeric = list(ranges)
    if not (config.evasion and numeric):
        return metrics, records
    x, y = test
    complete = x[numeric].notna().all(axis=1)  # the attack moves numbers: rows with a missing one are skipped
    sample = x[complete].sample(min(config.rows, int(complete.sum())), random_state=config.seed)
    truth = y.loc[sample.index]
    distances, worst = search(model, sample, truth, numeric, ranges, task, config)
    if task == "regression":
        metrics["mae_under_attack"] = float(np.mean(worst))
        return metrics, records
    correct = np.asarray(model.predict(sample)).astype(str) == truth.astype(str).to_numpy()
    distances = np.where(correct, distances, 0.0)
    metrics["adversarial_accuracy"] = float(np.mean(distances > config.budget))
    flipped = distances[correct]
    metrics["median_flip_distance"] = float(np.median(np.minimum(flipped, 1.0))) if len(flipped) else 0.0
    records = [{"budget": float(b), "accuracy": float(np.mean(distances > b))} for b in BUDGETS]
    return metrics, records
