"""The model bundle: model files plus metadata.json, the serving contract, with checksums.

`BundleMetadata` is that contract as a type: train and gate write it through these models, and every
reader (evaluate, serving, batch scoring, drift, CI) reads typed fields, so nothing can be written that
serving cannot read. Its shape is versioned by FORMAT_VERSION: a bundle of another format is refused
with one line.
A bundle is a function of its data, params, code and pinned libraries: it records no time and no git commit
(they would change its bytes, and so dvc.lock, on every run). When and from which commit a model was built is
recorded by what builds and ships it: the image (GIT_COMMIT, label org.opencontainers.image.revision), the CI
run, the MLflow run.
joblib files are pickles: nothing is unpickled before its sha256 matches the metadata.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as pkg_metadata
from pathlib import Path
from typing import Annotated, Any, Literal

import joblib
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_serializer,
    model_serializer,
    model_validator,
)

from mlops_template.core.config import EstimatorName, SchemaConfig, Task, Threshold
from mlops_template.core.errors import UserError
from mlops_template.core.fsutil import atomic_dir, sha256_file, write_text

METADATA = "metadata.json"
MODEL_FILE = "model.joblib"
# The shape of metadata.json (BundleMetadata). Bump it whenever a field is added, removed or changes meaning:
# a bundle of any other format is refused at load ("rebuild with `make pipeline`"), never half-read.
# 1: untyped dict; 2: BundleMetadata (typed, no unknown keys); 3: no git_commit, trained_at, gate.checked_at
# (reproducible: the same inputs give the same bytes).
FORMAT_VERSION = 3
PENDING, VALIDATED, REJECTED = "PENDING", "VALIDATED", "REJECTED"
Verdict = Literal["PENDING", "VALIDATED", "REJECTED"]
# Pickles are only portable within a minor version of these libraries.
PINNED_LIBRARIES = ("scikit-learn", "numpy")
RECORDED_LIBRARIES = (*PINNED_LIBRARIES, "pandas", "scipy", "joblib", "skl2onnx", "onnxruntime")
REBUILD = "rebuild the bundle with `make pipeline`"


class Record(BaseModel):
    """A part of metadata.json: unknown keys are errors (a typo or another format), values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NumericFeature(Record):
    """A number: the range and median observed in training (documented for requests, not enforced)."""

    name: str = Field(min_length=1)
    type: Literal["numeric"] = "numeric"
    missing_rate: float = Field(ge=0.0, le=1.0)
    min: float | None  # None: no value observed
    max: float | None
    median: float | None
    integer: bool  # every observed value was a whole number
    importance: float | None = None  # permutation importance on the test split (the gate records it)


class CategoricalFeature(Record):
    """Text: the categories seen in training (at most MAX_CATEGORIES_LISTED of them, the most frequent)."""

    name: str = Field(min_length=1)
    type: Literal["categorical"] = "categorical"
    missing_rate: float = Field(ge=0.0, le=1.0)
    categories: list[str]
    importance: float | None = None  # permutation importance on the test split (the gate records it)


Feature = Annotated[NumericFeature | CategoricalFeature, Field(discriminator="type")]
FEATURE_TYPES = ("numeric", "categorical")
Scalar = bool | int | float | str | None


class TrainingData(Record):
    source: str
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    rows: dict[str, int]  # per split: train, test


class TrainRecord(Record):
    estimator: EstimatorName
    seed: int
    hyperparameters: dict[str, Any]


class TrainedWith(Record):
    """The params.yaml sections that made this model."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    schema_: SchemaConfig = Field(alias="schema")
    train: TrainRecord


class GateRecord(Record):
    """The gate's verdict; train writes PENDING, the gate VALIDATED or REJECTED with what it checked."""

    verdict: Verdict = PENDING
    baseline: str | None = None
    failed: list[str] = []
    thresholds: list[Threshold] = []

    @field_serializer("thresholds")
    def _bounds_only(self, thresholds: list[Threshold]) -> list[dict[str, Any]]:
        return [t.model_dump(exclude_none=True) for t in thresholds]  # {metric, min} or {metric, max}


class OnnxRecord(Record):
    """The ONNX fast path: `used` only when the exported graph reproduced sklearn on the test split."""

    used: bool
    reason: str
    opset: int | None = None
    file: str | None = None
    tolerance: float | None = None
    rows_checked: int | None = None
    max_abs_diff: float | None = None  # classification
    label_mismatches: int | None = None  # classification
    max_rel_diff: float | None = None  # regression

    @model_serializer(mode="wrap")
    def _set_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}  # the figures of the path taken


class ModelRecord(Record):
    """What the training side records about a model; `save_bundle` adds the checksums and versions."""

    task: Task
    target: str
    classes: list[str] | None  # classification: in the model's output order; None for regression
    positive_class: str | None  # binary only
    estimator: EstimatorName
    features: list[Feature] = Field(min_length=1)
    example: dict[str, Scalar]  # a real training row: a valid request
    training_data: TrainingData
    params: TrainedWith
    metrics: dict[str, float] | None  # None until evaluated and gated
    gate: GateRecord
    onnx: OnnxRecord

    @model_validator(mode="after")
    def _consistent(self) -> ModelRecord:
        names = self.feature_names
        if len(set(names)) != len(names):
            raise ValueError(f"features: names repeat: {names}")
        if list(self.example) != names:
            raise ValueError(f"example: keys {list(self.example)} are not the features {names}")
        if (self.task == "regression") != (self.classes is None):
            raise ValueError(f"classes {self.classes!r} do not fit task {self.task}")
        if (self.task == "binary") != (self.positive_class is not None) or (
            self.positive_class is not None and self.positive_class not in (self.classes or [])
        ):
            raise ValueError(f"positive_class {self.positive_class!r} does not fit task {self.task} / classes")
        return self

    # The feature lists every reader uses (request model, predictors, ONNX inputs, drift window): derived here only.
    @property
    def feature_names(self) -> list[str]:
        """All features, in metadata order."""
        return [f.name for f in self.features]

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.type == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.type == "categorical"]

    @property
    def verdict(self) -> str:
        return self.gate.verdict


class BundleMetadata(ModelRecord):
    """metadata.json as written by `save_bundle`: the serving contract."""

    format_version: int
    model_version: str = Field(min_length=1)  # the first 12 hex digits of model.joblib's sha256
    files: dict[str, str]  # every other file in the bundle -> its sha256
    versions: dict[str, str | None]  # python and the RECORDED_LIBRARIES (None: not installed)

    @model_validator(mode="after")
    def _lists_model(self) -> BundleMetadata:
        if MODEL_FILE not in self.files:
            raise ValueError(f"files: lists no {MODEL_FILE}")
        return self


@dataclass(frozen=True)
class Bundle:
    path: Path
    metadata: BundleMetadata
    model: Any

    @property
    def verdict(self) -> str:
        return self.metadata.verdict

    @property
    def version(self) -> str:
        return self.metadata.model_version


def library_versions() -> dict[str, str | None]:
    # Python's minor version only: a runner's patch release (3.11.x) would change the bundle's bytes, not the model
    versions: dict[str, str | None] = {"python": ".".join(platform.python_version_tuple()[:2])}
    for name in RECORDED_LIBRARIES:
        try:
            versions[name] = pkg_metadata.version(name)
        except pkg_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(where: Path | None = None) -> str | None:
    """HEAD of the git work tree at `where` (default: the working directory); None outside one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"


def save_bundle(
    directory: str | Path, model: Any, record: ModelRecord, extra_files: dict[str, Path] | None = None
) -> Path:
    """Write model + extra files + metadata (with their checksums) to `directory`, atomically."""
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        joblib.dump(model, tmp / MODEL_FILE, compress=3)
        for name, source in (extra_files or {}).items():
            shutil.copyfile(source, tmp / name)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.name != METADATA}
        metadata = BundleMetadata.model_validate(
            {
                **record.model_dump(),
                "format_version": FORMAT_VERSION,
                "model_version": files[MODEL_FILE][:12],
                "files": files,
                "versions": library_versions(),
            }
        )
        write_metadata(tmp, metadata)
    return directory


def write_metadata(directory: Path, metadata: BundleMetadata) -> None:
    write_text(directory / METADATA, dump_json(metadata.model_dump(mode="json")))


def read_metadata(directory: str | Path) -> BundleMetadata:
    """metadata.json of a bundle, validated; any problem is one UserError naming the file, the field and the fix."""
    path = Path(directory) / METADATA
    if not path.is_file():
        raise UserError(f"{path}: missing; {directory} is not a model bundle (run `make pipeline`)")
    return read_metadata_file(path)


def read_metadata_file(path: Path) -> BundleMetadata:
    """A metadata.json file, validated (see `parse_metadata`)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); {REBUILD}") from None
    return parse_metadata(raw, path)


def parse_metadata(raw: Any, path: Path) -> BundleMetadata:
    """Check the format version first (an older bundle lacks fields: say so, not which), then every field."""
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(raw).__name__}; {REBUILD}")
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UserError(f"{path}: field `format_version` is missing or not an integer ({version!r}); {REBUILD}")
    if version < FORMAT_VERSION:
        raise UserError(
            f"{path}: format_version {version} is older than {FORMAT_VERSION}, the format this version of "
            f"mlops_template reads; {REBUILD}"
        )
    if version > FORMAT_VERSION:
        raise UserError(
            f"{path}: format_version {version} is newer than {FORMAT_VERSION}, the format this version of "
            f"mlops_template reads; upgrade mlops_template, or {REBUILD} using this version"
        )
    try:
        return BundleMetadata.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{path}: {_first_problem(exc)}; {REBUILD}") from None


def _first_problem(exc: ValidationError) -> str:
    """The first validation error as `field <dotted path>: message` (+ how many more)."""
    errors = exc.errors(include_url=False)
    error = errors[0]
    loc = error["loc"]
    # drop the union tag pydantic puts after a feature's index (features.0.numeric.min -> features.0.min)
    where = ".".join(
        str(p) for i, p in enumerate(loc) if not (i and isinstance(loc[i - 1], int) and p in FEATURE_TYPES)
    )
    got = error.get("input")
    if error["type"] == "missing":
        text = f"field `{where}` is missing"
    elif error["type"] == "extra_forbidden":
        text = f"unknown field `{where}`"
    elif where:
        text = f"field `{where}`: {error['msg']}" + ("" if isinstance(got, dict | list) else f" (got {got!r:.80})")
    else:
        text = error["msg"].removeprefix("Value error, ")
    more = len(errors) - 1
    return text + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def verify_files(directory: Path, metadata: BundleMetadata) -> None:
    """Every file listed in the metadata exists and has the recorded sha256."""
    for name, expected in metadata.files.items():
        path = directory / name
        if not path.is_file():
            raise UserError(f"{path}: missing file listed in {METADATA}; rebuild or re-copy the bundle")
        actual = sha256_file(path)
        if actual != expected:
            raise UserError(
                f"{path}: checksum mismatch (sha256 {actual[:12]}… != {expected[:12]}… in {METADATA}); "
                "the file was changed or corrupted: refusing to load it"
            )


def check_versions(metadata: BundleMetadata, directory: Path) -> None:
    current = library_versions()
    for name in PINNED_LIBRARIES:
        want, have = metadata.versions.get(name), current.get(name)
        if want and have and want.split(".")[:2] != have.split(".")[:2]:
            raise UserError(
                f"{directory}: trained with {name} {want} but {have} is installed; "
                f"install {name}=={want} (requirements.txt) or retrain"
            )


def load_bundle(directory: str | Path, allow: tuple[str, ...] = (VALIDATED,)) -> Bundle:
    """Verify and load a bundle whose gate verdict is in `allow` (serving accepts VALIDATED only)."""
    directory = Path(directory)
    metadata = read_metadata(directory)
    verdict = metadata.verdict
    if verdict not in allow:
        raise UserError(
            f"{directory}: gate verdict is {verdict}, expected {' or '.join(allow)}; "
            + ("the gate rejected this model, see reports/gate.md" if verdict == REJECTED else "run `make gate`")
        )
    verify_files(directory, metadata)
    check_versions(metadata, directory)
    return Bundle(path=directory, metadata=metadata, model=joblib.load(directory / MODEL_FILE))
