"""The request contract, built at run time from the bundle's metadata.json (nothing here names a column).

One `Contract` serves the API and the batch scorer alike:
- the rules per feature (type, nullable, documented range or categories) come from the metadata;
- `validate_records` applies them to JSON records (pydantic models, which also make /docs);
- `validate_frame` applies the same rules to a CSV chunk (vectorised: CSV cells are text, not JSON types);
- `flags` marks values outside the training range and unknown categories, for both.
Documented ranges and categories are not enforced: such values are predicted and flagged.

The label rule (`json_label`, `text_label`): a categorical value, or a class in /feedback, is text; a JSON number or
boolean there is read as the label training gives that value in a CSV (core.tabular `as_label`): 0 -> "0",
1.0 -> "1", true -> "True". Numeric features take JSON numbers only (no "5000", no true).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    create_model,
)

from mlops_template.core.bundle import Feature, ModelRecord, NumericFeature
from mlops_template.core.onnx_runtime import MISSING_TEXT
from mlops_template.core.tabular import as_label

MAX_ERRORS = 20  # error details returned per request / kept per CSV row
SMALL_BATCH = 64  # below this, plain Python beats numpy/pandas set-up costs
# how pandas reads booleans in a CSV (its default true/false values): such a column becomes bool, so "True"/"False"
TRUE_TEXT, FALSE_TEXT = frozenset({"True", "TRUE", "true"}), frozenset({"False", "FALSE", "false"})
LABEL_RULE = 'JSON numbers and booleans are read as the label training gives them: 0 -> "0", 1.0 -> "1", true -> "True"'


def json_label(value: Any) -> str | None:
    """The label of a JSON number or boolean, as training labels that value in a CSV; None for anything else.

    Booleans: pandas reads a CSV column of True/true/TRUE and False/... as bool, and `as_label` gives "True" and
    "False", so JSON true is the category "True" that training saw, not "1" or "true". Integers and integral floats
    are one label (1 and 1.0 -> "1"), as a numeric CSV column is read as float. NaN and Infinity have no label.
    """
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):  # bool is an int
        return as_label(value)
    return None


def text_label(text: str, known: frozenset[str]) -> str:
    """A CSV cell of a categorical column that is not a known category as it stands: the label training gives it
    when `known` has that (stripped, or read as a number or boolean as pandas reads a numeric/bool column:
    "1.0" -> "1", "true" -> "True"); otherwise the text itself (an unknown category, flagged)."""
    stripped = text.strip()  # as `as_label` strips in training
    if stripped in known:
        return stripped
    if stripped in TRUE_TEXT or stripped in FALSE_TEXT:
        label = "True" if stripped in TRUE_TEXT else "False"
    else:
        number = pd.to_numeric(stripped, errors="coerce")  # pandas' reading of numbers, as in training
        label = json_label(float(number)) if not pd.isna(number) else None
    return label if label is not None and label in known else text


def _class_or_label(value: Any) -> Any:
    label = json_label(value)
    return value if label is None else label


def class_type(classes: Sequence[str], description: str) -> Any:
    """A classification target in a request: one of `classes`, or a number/boolean whose label is one of them."""
    accepted: list[Any] = list(classes)
    for value in (True, False, *(_number(c) for c in classes)):
        if value is not None and json_label(value) in classes and (type(value), value) not in _typed(accepted):
            accepted.append(value)  # typed: True == 1 in Python, not in JSON
    schema = {"enum": accepted, "description": f"{description}. {LABEL_RULE}"}
    return Annotated[Literal[tuple(classes)], BeforeValidator(_class_or_label), WithJsonSchema(schema)]


def _typed(values: list[Any]) -> set[tuple[type, Any]]:
    return {(type(v), v) for v in values}


def _number(text: str) -> int | float | None:
    number = pd.to_numeric(text, errors="coerce")
    if pd.isna(number):
        return None
    return int(number) if float(number).is_integer() else float(number)


@dataclass(frozen=True)
class FeatureSpec:
    """One request field as the metadata describes it."""

    name: str
    kind: str  # numeric | categorical
    nullable: bool
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] = ()
    known: frozenset[str] = field(default=frozenset(), repr=False)

    @classmethod
    def from_metadata(cls, entry: Feature) -> FeatureSpec:
        if isinstance(entry, NumericFeature):
            return cls(entry.name, entry.type, entry.missing_rate > 0.0, minimum=entry.min, maximum=entry.max)
        categories = tuple(entry.categories)
        return cls(entry.name, entry.type, entry.missing_rate > 0.0, categories=categories, known=frozenset(categories))

    def description(self) -> str:
        missing = "null allowed (missing in training data)" if self.nullable else "required, not null"
        if self.kind == "numeric":
            return (
                f"number; {missing}. Training range {self.minimum} .. {self.maximum} "
                "(documented, not enforced: values outside are predicted and flagged in `out_of_range`)"
            )
        shown = ", ".join(self.categories)
        return (
            f"text; {missing}. Known categories: {shown} "
            f"(others are accepted, predicted and flagged in `unknown_categories`). {LABEL_RULE}"
        )

    def annotation(self, example: Any) -> Any:
        """The pydantic type: strict (no "1.5" for a number), finite, no empty strings."""
        extra: dict[str, Any] = {"x-nullable-in-training": self.nullable}
        if self.kind == "numeric":
            base: Any = float
            constraints: dict[str, Any] = {"strict": True, "allow_inf_nan": False}
            extra |= {"x-training-min": self.minimum, "x-training-max": self.maximum}
        else:
            base = str
            constraints = {"strict": True, "min_length": 1}
            extra |= {"x-known-categories": list(self.categories)}
        kind = base | None if self.nullable else base
        examples = [] if example is None and not self.nullable else [example]
        documented: list[Any] = []
        if self.kind == "categorical":  # validation stays strict text; the label rule runs on its errors only
            types = [{"type": "string", "minLength": 1}, {"type": "number"}, {"type": "boolean"}]
            documented = [WithJsonSchema({"anyOf": types + ([{"type": "null"}] if self.nullable else [])})]
        return Annotated[
            kind,
            *documented,
            Field(
                alias=self.name,
                description=self.description(),
                examples=examples,
                json_schema_extra=extra,
                **constraints,
            ),
        ]


class RowError(Exception):
    """Bad records: details are (row index, field, message) triples, the first MAX_ERRORS of them."""

    def __init__(self, details: list[dict[str, Any]]):
        super().__init__("; ".join(_describe(d) for d in details))
        self.details = details


def _describe(detail: dict[str, Any]) -> str:
    where = f"row {detail['row']}" if detail.get("row") is not None else "body"
    return (
        f"{where}, field {detail['field']!r}: {detail['message']}"
        if detail.get("field")
        else f"{where}: {detail['message']}"
    )


class Columns(Mapping[str, np.ndarray]):
    """Validated records as two matrices, in the order of `Contract.numeric` / `Contract.categorical`:
    `numbers` [rows, numeric features] (float64, NaN = missing) and `texts` [rows, categorical features]
    (object, MISSING_TEXT = missing: strings cannot be NaN), the fused ONNX graph's inputs as they are.

    As a mapping, one 1-D array per feature in metadata order (float64 with NaN / object with NaN for
    missing, the form of a CSV chunk), each made on first access: the hot path (ONNX, flags) reads the
    matrices only.
    """

    def __init__(self, contract: Contract, numbers: np.ndarray, texts: np.ndarray) -> None:
        self.contract, self.numbers, self.texts = contract, numbers, texts
        self._made: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        column = self._made.get(name)
        if column is None:
            column = self._made[name] = self.contract.column(self, name)
        return column

    def __iter__(self) -> Iterator[str]:
        return iter(self.contract.by_name)

    def __len__(self) -> int:
        return len(self.contract.by_name)

    @classmethod
    def concat(cls, parts: Sequence[Columns]) -> Columns:
        """Several validated batches of one contract as one, rows in order."""
        if len(parts) == 1:
            return parts[0]
        numbers = np.concatenate([part.numbers for part in parts])
        return cls(parts[0].contract, numbers, np.concatenate([part.texts for part in parts]))


def _getter(attributes: list[str]) -> Any:
    """record -> tuple of the attributes (operator.attrgetter returns a bare value for one name)."""
    if not attributes:
        return lambda record: ()
    if len(attributes) == 1:
        name = attributes[0]
        return lambda record: (getattr(record, name),)
    return attrgetter(*attributes)


@dataclass
class Flags:
    """Per row: the features whose value lies outside the training range / is an unseen category."""

    out_of_range: list[list[str]]
    unknown_categories: list[list[str]]
    counts_out_of_range: dict[str, int]
    counts_unknown: dict[str, int]


class Contract:
    """Features, request model and validation rules of one bundle."""

    def __init__(self, metadata: ModelRecord):
        self.features = [FeatureSpec.from_metadata(f) for f in metadata.features]
        self.by_name = {f.name: f for f in self.features}
        self.numeric, self.categorical = metadata.numeric, metadata.categorical
        self.example = dict(metadata.example)
        self.task = metadata.task
        self.classes = list(metadata.classes or [])
        self._attributes = [f"f{i}" for i in range(len(self.features))]
        fields = {
            attr: (spec.annotation(self.example[spec.name]), ...)
            for attr, spec in zip(self._attributes, self.features, strict=True)
        }
        self.record_model: type[BaseModel] = create_model(
            "Record",
            __config__=ConfigDict(
                extra="forbid", populate_by_name=False, json_schema_extra={"examples": [self.example]}
            ),
            __doc__="One row to score: the model's features, as in the training data.",
            **fields,
        )
        self._records = TypeAdapter(list[self.record_model])
        attribute = dict(zip(self.by_name, self._attributes, strict=True))
        self._numeric_of = _getter([attribute[name] for name in self.numeric])  # record -> tuple of values
        self._categorical_of = _getter([attribute[name] for name in self.categorical])
        self._bounds = [
            (f.name, -math.inf if f.minimum is None else f.minimum, math.inf if f.maximum is None else f.maximum)
            for f in (self.by_name[name] for name in self.numeric)
        ]
        # the categories the model knows: MISSING_TEXT (a missing value, imputed) wherever training had missing values
        self._known = {
            name: spec.known | {MISSING_TEXT} if spec.nullable else spec.known
            for name, spec in ((name, self.by_name[name]) for name in self.categorical)
        }
        self._nullable_text = [i for i, name in enumerate(self.categorical) if self.by_name[name].nullable]
        self._numeric_index = {name: j for j, name in enumerate(self.numeric)}
        self._categorical_index = {name: j for j, name in enumerate(self.categorical)}

    # ---- JSON records (API) -------------------------------------------------------------------
    def validate_records(self, rows: list[Any]) -> Columns:
        """Validate parsed JSON records into the two matrices the fused ONNX graph takes (see `Columns`),
        built in one pass so that the predictor converts nothing per request."""
        try:
            records = self._records.validate_python(rows)
        except ValidationError as exc:
            records = self._relabelled(rows, exc)
        numbers = np.array([self._numeric_of(r) for r in records], dtype=np.float64).reshape(len(records), -1)
        rows = [self._categorical_of(r) for r in records]
        texts = np.array(rows, dtype=object).reshape(len(records), -1)
        if self._nullable_text and any(None in row for row in rows):  # C-speed scan of tuples
            texts[texts == None] = MISSING_TEXT  # noqa: E711 - elementwise
        return Columns(self, numbers, texts)

    def _relabelled(self, rows: list[Any], exc: ValidationError) -> list[BaseModel]:
        """The records with JSON numbers/booleans for categorical features replaced by their label (`json_label`),
        validated again; RowError for what remains. Only on the error path: well-typed requests pay nothing."""
        fixed = list(rows)
        changed = False
        for error in exc.errors(include_url=False):
            loc, label = error["loc"], json_label(error.get("input"))
            if error["type"] != "string_type" or label is None or len(loc) != 2 or not isinstance(loc[0], int):
                continue
            row, name = loc
            if name in self._categorical_index:
                fixed[row] = {**fixed[row], name: label}
                changed = True
        if changed:
            try:
                return self._records.validate_python(fixed)
            except ValidationError as again:
                exc = again
        raise RowError(self._details(exc)) from None

    def column(self, columns: Columns, name: str) -> np.ndarray:
        """One feature of validated records as a 1-D array (missing categories as NaN: sklearn imputes NaN)."""
        if name in self._numeric_index:
            return columns.numbers[:, self._numeric_index[name]]
        column = columns.texts[:, self._categorical_index[name]]
        missing = column == MISSING_TEXT
        if missing.any():
            column = column.copy()
            column[missing] = np.nan
        return column

    def _details(self, exc: ValidationError) -> list[dict[str, Any]]:
        details = []
        for error in exc.errors(include_url=False)[:MAX_ERRORS]:
            loc = list(error["loc"])
            row = loc.pop(0) if loc and isinstance(loc[0], int) else None
            name = str(loc[0]) if loc else None
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = f"unknown field; the model's fields are: {', '.join(self.by_name)}"
            elif error["type"] == "missing":
                spec = self.by_name.get(name or "")
                message = "field required" + (
                    " (send null when the value is unknown)" if spec and spec.nullable else ""
                )
            elif error["type"] in ("model_type", "model_attributes_type", "dict_type"):
                message = "each record must be a JSON object of feature: value"
            elif hint := self._hint(name, error):
                message = f"{message} ({hint})"
            details.append({"row": row, "field": name, "message": message, "type": error["type"]})
        return details

    def _hint(self, name: str | None, error: dict[str, Any]) -> str:
        spec = self.by_name.get(name or "")
        value = error.get("input")
        if spec is None:
            return ""
        if value is None and not spec.nullable:
            return "null is not accepted: this feature had no missing values in training"
        if error["type"] == "finite_number":
            return "NaN and Infinity are not allowed" + ("; send null for a missing value" if spec.nullable else "")
        if spec.kind == "numeric" and isinstance(value, str):
            return "send a JSON number, not a string"
        if spec.kind == "categorical" and not isinstance(value, str):
            example = f", e.g. {spec.categories[0]!r}" if spec.categories else ""
            return f"send text{example}; numbers and booleans are read as their label, NaN and lists are not"
        return ""

    # ---- CSV chunks (batch) -------------------------------------------------------------------
    def missing_columns(self, columns: list[str]) -> list[str]:
        return [f.name for f in self.features if f.name not in columns]

    def validate_frame(self, frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], list[str | None]]:
        """Apply the rules to a CSV chunk: columns of the valid rows, and a reason (or None) per row."""
        reasons: dict[int, list[str]] = {}  # only rows with a problem get an entry
        bad = np.zeros(len(frame), dtype=bool)
        parsed: dict[str, np.ndarray] = {}

        def reject(mask: np.ndarray, message: Any) -> None:
            for i in np.flatnonzero(mask):
                found = reasons.setdefault(int(i), [])
                if len(found) < MAX_ERRORS:
                    found.append(message(i) if callable(message) else message)
            bad[mask] = True

        for spec in self.features:
            raw = frame[spec.name]
            missing = raw.isna().to_numpy()
            if spec.kind == "numeric":
                values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
                text = np.isnan(values) & ~missing
                reject(text, lambda i, raw=raw, name=spec.name: f"{name}: {raw.iloc[i]!r} is not a number")
                reject(np.isinf(values), f"{spec.name}: Infinity is not allowed")
                parsed[spec.name] = values
            else:
                parsed[spec.name] = self._text_labels(spec.name, raw.to_numpy(dtype=object, na_value=np.nan))
            if not spec.nullable:
                reject(missing, f"{spec.name}: missing, but this feature had no missing values in training")
        good = ~bad
        columns = {name: values[good] for name, values in parsed.items()}
        described: list[str | None] = [None] * len(frame)
        for i, found in reasons.items():
            described[i] = "; ".join(found)
        return columns, described

    def _text_labels(self, name: str, values: np.ndarray) -> np.ndarray:
        """`text_label` on the cells that are not known categories (once per distinct value); known ones stay."""
        known = self._known[name]
        codes, uniques = pd.factorize(values)  # missing (NaN) -> code -1, left alone
        labels = [text_label(u, known) if isinstance(u, str) and u not in known else u for u in uniques]
        if all(a is b for a, b in zip(labels, uniques, strict=True)):
            return values
        return np.asarray([*labels, np.nan], dtype=object)[codes]

    # ---- flags (both) -------------------------------------------------------------------------
    def flags(self, columns: dict[str, np.ndarray], n: int) -> Flags:
        if n <= SMALL_BATCH:
            return self._flags_small(columns, n)
        masks: dict[str, np.ndarray] = {}
        for spec in self.features:
            values = columns[spec.name]
            if spec.kind == "numeric":
                mask = np.zeros(n, dtype=bool)
                with np.errstate(invalid="ignore"):
                    if spec.minimum is not None:
                        mask |= values < spec.minimum
                    if spec.maximum is not None:
                        mask |= values > spec.maximum
            else:  # hashing in pandas beats a Python loop on big batches
                series = pd.Series(values, dtype=object, copy=False)
                mask = (series.notna() & ~series.isin(self._known[spec.name])).to_numpy()
            masks[spec.name] = mask
        ranges = {name: masks[name] for name in self.numeric}
        unknown = {name: masks[name] for name in self.categorical}
        return Flags(
            out_of_range=_per_row(ranges, n),
            unknown_categories=_per_row(unknown, n),
            counts_out_of_range={k: int(m.sum()) for k, m in ranges.items() if m.any()},
            counts_unknown={k: int(m.sum()) for k, m in unknown.items() if m.any()},
        )

    def _flags_small(self, columns: dict[str, np.ndarray], n: int) -> Flags:
        """Same result as the vectorised path; plain Python is faster for a handful of rows."""
        numbers, texts = getattr(columns, "numbers", None), getattr(columns, "texts", None)
        if numbers is not None and texts is not None:
            return self._flags_rows(numbers, texts)
        out_of_range: list[list[str]] = [[] for _ in range(n)]
        unknown: list[list[str]] = [[] for _ in range(n)]
        counts_range: dict[str, int] = {}
        counts_unknown: dict[str, int] = {}
        for spec in self.features:
            name = spec.name
            if spec.kind == "numeric":
                low = -math.inf if spec.minimum is None else spec.minimum
                high = math.inf if spec.maximum is None else spec.maximum
                for i, value in enumerate(columns[name].tolist()):
                    if value < low or value > high:  # NaN compares False: missing is not out of range
                        out_of_range[i].append(name)
                        counts_range[name] = counts_range.get(name, 0) + 1
            else:
                known = self._known[name]
                for i, value in enumerate(columns[name].tolist()):
                    if isinstance(value, str) and value not in known:
                        unknown[i].append(name)
                        counts_unknown[name] = counts_unknown.get(name, 0) + 1
        return Flags(out_of_range, unknown, counts_range, counts_unknown)

    def _flags_rows(self, numbers: np.ndarray, texts: np.ndarray) -> Flags:
        """`_flags_small` on the matrices of `Columns`: row by row, one list conversion per matrix."""
        out_of_range: list[list[str]] = []
        unknown: list[list[str]] = []
        counts_range: dict[str, int] = {}
        counts_unknown: dict[str, int] = {}
        for row in numbers.tolist():
            # NaN compares False: missing is not out of range
            found = [
                name for (name, low, high), value in zip(self._bounds, row, strict=True) if value < low or value > high
            ]
            out_of_range.append(found)
            for name in found:
                counts_range[name] = counts_range.get(name, 0) + 1
        for row in texts.tolist():
            found = [name for (name, known), value in zip(self._known.items(), row, strict=True) if value not in known]
            unknown.append(found)
            for name in found:
                counts_unknown[name] = counts_unknown.get(name, 0) + 1
        return Flags(out_of_range, unknown, counts_range, counts_unknown)


def _per_row(masks: dict[str, np.ndarray], n: int) -> list[list[str]]:
    """Feature names per row; unflagged rows share one empty list (read-only by convention, saves time)."""
    empty: list[str] = []
    rows: list[list[str]] = [empty] * n
    for name, mask in masks.items():
        for i in np.flatnonzero(mask).tolist():
            rows[i] = [*rows[i], name]
    return rows
