"""The Predict page's form, derived from GET /model: one input per feature, typed, bounded and pre-filled."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

EXAMPLE = "the example row (a real training row)"
TYPICAL = "typical values (median, first category)"


@dataclass(frozen=True)
class Input:
    """One form input: a number (bounds = the training range) or a choice among the training categories."""

    name: str
    numeric: bool
    value: Any  # the pre-filled value; None = empty (sent as null)
    low: float | int | None = None
    high: float | int | None = None
    integer: bool = False
    categories: tuple[str, ...] = ()

    @property
    def help(self) -> str:
        if self.numeric:
            known = self.low is not None and self.high is not None
            span = f"training range {self.low:g} to {self.high:g}; " if known else ""
            return f"{span}leave empty when unknown (sent as null)"
        return "a category seen in training, or type a new one (the service flags it)"


def _number(value: Any, integer: bool) -> float | int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value)) if integer else float(value)


def inputs(model: dict[str, Any], start: str = EXAMPLE) -> list[Input]:
    """The form's inputs for the model's features, pre-filled from its example row or its typical values."""
    example = model.get("example") or {}
    use_example = start == EXAMPLE and bool(example)
    result = []
    for feature in model["features"]:
        name = feature["name"]
        if feature.get("type") == "numeric":
            integer = bool(feature.get("integer"))
            typical = feature.get("median", feature.get("min", 0.0))
            value = example.get(name) if use_example else typical
            result.append(Input(name, True, _number(value, integer), _number(feature.get("min"), integer),
                                _number(feature.get("max"), integer), integer))  # fmt: skip
        else:
            categories = tuple(str(c) for c in feature.get("categories") or [])
            value = example.get(name) if use_example else (categories[0] if categories else None)
            result.append(Input(name, False, None if value is None else str(value), categories=categories))
    return result


def flag_sentences(prediction: dict[str, Any], model: dict[str, Any]) -> list[str]:
    """The out-of-range and unknown-category flags of one prediction, in words."""
    features = {f["name"]: f for f in model["features"]}
    sentences = []
    for name in prediction.get("out_of_range") or []:
        feature = features.get(name, {})
        span = f" ({feature['min']:g} to {feature['max']:g})" if "min" in feature and "max" in feature else ""
        sentences.append(f"{name} is outside the range seen in training{span}: treat this prediction with care.")
    for name in prediction.get("unknown_categories") or []:
        sentences.append(f"{name} has a category never seen in training: the model treats it as unknown.")
    return sentences


def probability_rows(prediction: dict[str, Any]) -> list[dict[str, Any]]:
    """Class probabilities as rows for a bar chart (classification only; empty for regression)."""
    return [{"class": c, "probability": p} for c, p in (prediction.get("probabilities") or {}).items()]
