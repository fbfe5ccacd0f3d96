"""Ground-truth feedback: recent predictions kept by request id, live quality over a window.

Bounded twice: at most `capacity` predictions wait for feedback (the oldest is evicted first) and
none waits longer than `ttl_seconds`. Ids that left the store are remembered (bounded too) so a late
caller is told "expired" or "already answered" (HTTP 409) rather than "unknown" (HTTP 404).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from mlops_template.core.config import FeedbackConfig
from mlops_template.core.tabular import as_label

SERVED = "served"  # the scope of the answers clients actually received, whatever the variant


class FeedbackError(Exception):
    """Feedback that cannot be applied; `http_status` is what the API answers."""

    http_status = 400


class UnknownRequest(FeedbackError):
    http_status = 404


class ExpiredRequest(FeedbackError):
    http_status = 409


class DuplicateFeedback(FeedbackError):
    http_status = 409


class InvalidActual(FeedbackError):
    http_status = 422


class StateUnavailable(FeedbackError):
    """The shared state (Redis, monitoring/shared.py) did not answer."""

    http_status = 503


# A prediction waiting for feedback: (created, served variant, then variant, label, score for each variant that
# predicted it). One flat tuple of strings and numbers on purpose: the garbage collector stops tracking it at
# its first collection, so a full store (`capacity` entries) does not make every full collection stall all
# requests for tens of milliseconds.
Pending = tuple[Any, ...]


def _with_prediction(entry: Pending | None, at: float, variant: str, label: Any, score: float | None,
                     served: bool) -> Pending:  # fmt: skip
    """The entry with `variant`'s prediction set; a new entry is served by its first variant."""
    if entry is None:
        return (at, variant, variant, label, score)
    others = [value for row in _predictions(entry) if row[0] != variant for value in row]
    return (entry[0], variant if served else entry[1], *others, variant, label, score)


def _predictions(entry: Pending) -> list[tuple[str, Any, float | None]]:
    """(variant, label, score) of each variant that predicted the entry."""
    return [entry[i : i + 3] for i in range(2, len(entry), 3)]


class LiveWindow:
    """The last `size` feedback outcomes in fixed arrays: correctness, positive score, truth, error."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.success = np.zeros(size, dtype=bool)
        self.score = np.full(size, np.nan)
        self.truth = np.zeros(size, dtype=bool)
        self.error = np.full(size, np.nan)
        self.next = 0
        self.filled = 0

    def add(self, success: bool, score: float | None, truth: bool, error: float | None) -> None:
        i = self.next
        self.success[i], self.truth[i] = success, truth
        self.score[i] = np.nan if score is None else score
        self.error[i] = np.nan if error is None else error
        self.next = (i + 1) % self.size
        self.filled = min(self.filled + 1, self.size)


def gone_error(request_id: str, why: str | None) -> FeedbackError:
    """The error for an id without a pending entry: never recorded (404), or why it left (409)."""
    if why is None:
        return UnknownRequest(f"request_id {request_id!r}: unknown (no prediction was recorded for it)")
    if why == "answered":
        return DuplicateFeedback(f"request_id {request_id!r}: feedback already received")
    return ExpiredRequest(f"request_id {request_id!r}: {why}")


@dataclass(frozen=True)
class Outcome:
    """What one feedback taught: per variant, whether its prediction was a success."""

    request_id: str
    served: str
    success: dict[str, bool]


class FeedbackStore:
    """Predictions awaiting ground truth and the live quality windows (overall and per variant)."""

    def __init__(
        self,
        task: str,
        classes: Sequence[str] | None,
        config: FeedbackConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if task != "regression" and not classes:
            raise ValueError("classification needs the class labels")
        self.task, self.classes, self.config, self.clock = task, list(classes or []), config, clock
        self.positive = self.classes[-1] if task == "binary" else None  # bundles order the positive class last
        self._pending: OrderedDict[str, Pending] = OrderedDict()
        self._gone: OrderedDict[str, str] = OrderedDict()  # id -> why it left ("expired", "answered", ...)
        self._windows: dict[str, LiveWindow] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pending)

    def _score(self, proba: Mapping[str, float] | Sequence[float] | None) -> float | None:
        """The positive-class probability (binary), from a {class: p} mapping or a list in class order."""
        if self.positive is None or proba is None:
            return None
        return float(proba[self.positive] if isinstance(proba, Mapping) else proba[-1])

    def reason(self, why: str) -> str:
        """The words of a reason an id left the store ("expired", "evicted", "answered")."""
        if why == "expired":
            return f"expired (predictions wait {self.config.ttl_seconds:g} s for feedback)"
        if why == "evicted":
            return f"evicted (at most {self.config.capacity} predictions are kept)"
        return why

    def _forget(self, request_id: str, why: str) -> None:
        self._gone[request_id] = why
        self._gone.move_to_end(request_id)
        while len(self._gone) > self.config.capacity:
            self._gone.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._pending:
            request_id, entry = next(iter(self._pending.items()))
            if now - entry[0] < self.config.ttl_seconds:
                break
            self._pending.popitem(last=False)
            self._forget(request_id, self.reason("expired"))

    def record(
        self,
        request_id: str,
        prediction: Any,
        proba: Mapping[str, float] | Sequence[float] | None = None,
        variant: str = "champion",
        served: bool = True,
    ) -> None:
        """Remember a prediction of `variant` (served: the one the client got; else a shadow prediction)."""
        self.record_batch([request_id], [prediction], None, variant, served, scores=[self._score(proba)])

    def record_batch(
        self,
        request_ids: Sequence[str],
        predictions: Sequence[Any],
        proba: Any | None = None,
        variant: str = "champion",
        served: bool = True,
        created: Sequence[float] | None = None,
        scores: Sequence[float | None] | None = None,
    ) -> None:
        """`record` for many rows under one lock (`proba`: [rows, classes] in class order).

        `created`: when each row was predicted (the store's clock; default now), for rows recorded late.
        `scores`: the positive-class probabilities, when given instead of `proba`.
        """
        now = self.clock()
        predictions, scores = self._labels_scores(predictions, proba, scores, len(request_ids))
        with self._lock:
            self._expire(now)
            pending = self._pending
            times = [now] * len(request_ids) if created is None else created
            for request_id, prediction, score, at in zip(request_ids, predictions, scores, times, strict=True):
                pending[request_id] = _with_prediction(pending.get(request_id), at, variant, prediction, score, served)
            while len(pending) > self.config.capacity:
                evicted, _ = pending.popitem(last=False)
                self._forget(evicted, self.reason("evicted"))

    def record_groups(self, groups: Sequence[tuple[Any, ...]]) -> None:
        """`record_batch` for several argument tuples (the shared store sends them in one round trip)."""
        for args in groups:
            self.record_batch(*args)

    def _labels_scores(self, predictions: Sequence[Any], proba: Any | None, scores: Sequence[float | None] | None,
                       rows: int) -> tuple[Sequence[Any], Sequence[float | None]]:  # fmt: skip
        """The predictions as labels and the positive-class scores of `rows` rows."""
        if scores is None:
            scores = [None] * rows
            if self.positive is not None and proba is not None:
                scores = np.asarray(proba, dtype=float)[:, -1].tolist()
        if self.task != "regression":  # few distinct classes: label each once, not once per row
            names = {p: as_label(p) for p in set(predictions)}
            predictions = [names[p] for p in predictions]
        return predictions, scores

    def _truth(self, actual: Any) -> Any:
        if self.task == "regression":
            try:
                value = float(actual)
            except (TypeError, ValueError):
                raise InvalidActual(f"actual must be a number for a regression model, got {actual!r}") from None
            if not math.isfinite(value):
                raise InvalidActual(f"actual must be a finite number, got {actual!r}")
            return value
        label = as_label(actual)
        if label not in self.classes:
            raise InvalidActual(f"actual {actual!r} is not one of the model's classes {self.classes}")
        return label

    def _success(self, predicted: Any, truth: Any) -> tuple[bool, float | None]:
        if self.task == "regression":
            error = abs(float(predicted) - truth)
            return error <= self.config.regression_tolerance * max(abs(truth), 1e-12), error
        return predicted == truth, None

    def feedback(self, request_id: str, actual: Any) -> Outcome:
        """Apply the ground truth of a recorded request; raises a FeedbackError the API maps to 404/409/422."""
        truth = self._truth(actual)
        entry = self._take(request_id)
        served = entry[1]
        successes, added = {}, []
        for variant, predicted, score in _predictions(entry):
            success, error = self._success(predicted, truth)
            successes[variant] = success
            scopes = [variant, SERVED] if variant == served else [variant]
            added += [(scope, success, score, truth == self.positive, error) for scope in scopes]
        self._add_outcomes(added)
        return Outcome(request_id, served, successes)

    def _take(self, request_id: str) -> Pending:
        """Remove and return the entry of `request_id` (remembered as answered), or raise why there is none."""
        with self._lock:
            self._expire(self.clock())
            entry = self._pending.pop(request_id, None)
            if entry is None:
                raise gone_error(request_id, self._gone.get(request_id))
            self._forget(request_id, "answered")
        return entry

    def _add_outcomes(self, added: Sequence[tuple[str, bool, float | None, bool, float | None]]) -> None:
        """(scope, success, score, truth is positive, error) into the scopes' live windows."""
        with self._lock:
            for scope, *outcome in added:
                self._windows.setdefault(scope, LiveWindow(self.config.window_size)).add(*outcome)

    def _window(self, scope: str) -> tuple[int, list[np.ndarray] | None]:
        """The filled length of a scope's window and copies of its success, score, truth, error arrays."""
        with self._lock:
            window = self._windows.get(scope)
            n = window.filled if window else 0
            return n, [a[:n].copy() for a in (window.success, window.score, window.truth, window.error)] if n else None

    def metrics(self, scope: str = SERVED) -> dict[str, Any]:
        """Live quality of a scope ("served" or a variant): None until `min_feedback` outcomes are in."""
        n, data = self._window(scope)
        result: dict[str, Any] = {"feedback": n, "accuracy": None, "roc_auc": None, "mae": None}
        if data is None or n < self.config.min_feedback:
            return result
        success, score, truth, error = data
        if self.task == "regression":
            result["mae"] = float(np.mean(error))
        else:
            result["accuracy"] = float(np.mean(success))
        if self.task == "binary" and not np.isnan(score).any() and 0 < truth.sum() < n:
            result["roc_auc"] = float(roc_auc_score(truth, score))  # undefined while one class only
        return result

    def scopes(self) -> list[str]:
        with self._lock:
            return sorted(self._windows)
