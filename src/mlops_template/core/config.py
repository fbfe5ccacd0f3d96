"""Typed view of params.yaml: the only module that reads it, and the place its mistakes are caught."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlops_template.core.errors import UserError

DEFAULT_PARAMS = Path("params.yaml")
MAX_VALUES = 100_000  # params.yaml holds about 100; far more is YAML aliases expanding exponentially (billion laughs)
SHOWN_CHARS = 80  # an offending value is quoted up to this length: the error stays one readable line per key
Task = Literal["binary", "multiclass", "regression"]


class Section(BaseModel):
    """A params.yaml section: unknown keys are errors, not silently ignored typos."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SampleConfig(Section):
    rows: int = Field(10_000, gt=0)
    seed: int = 42
    drift: float = Field(0.0, ge=0.0, le=1.0)


class ReadConfig(Section):
    """How CSV files are read: the training data, batch-prediction inputs and drift batches alike."""

    delimiter: str = ","  # one character, or "auto": sniffed among , ; tab | from the file's first lines
    decimal: str = Field(".", min_length=1, max_length=1)
    thousands: str | None = Field(None, min_length=1, max_length=1)
    encoding: str = "utf-8"
    na_values: list[str] = []  # extra spellings of a missing value, on top of "", NA, NaN, null

    @model_validator(mode="after")
    def _consistent(self) -> ReadConfig:
        if self.delimiter != "auto" and len(self.delimiter) != 1:
            raise ValueError(f"delimiter must be one character or auto, not {self.delimiter!r}")
        if self.decimal in (self.delimiter, self.thousands):
            raise ValueError(f"decimal {self.decimal!r} cannot also be the delimiter or the thousands separator")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {self.encoding!r} (e.g. utf-8, latin-1, cp1252)") from None
        return self


class SourceConfig(Section):
    """Where `make data-refresh` (CT) fetches the newest data: a CSV/Parquet file or URL, or a SQL query."""

    url: str | None = Field(None, min_length=1)  # a path or fsspec URL: https://, gs:// (gcsfs), s3:// (s3fs)
    format: Literal["auto", "csv", "parquet"] = "auto"  # auto: parquet for *.parquet / *.pq, else csv
    query: str | None = Field(None, min_length=1)  # SQL through SQLAlchemy, instead of url
    database_url_env: str = Field("DATA_DATABASE_URL", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # the env var, not the URL

    @model_validator(mode="after")
    def _one_source(self) -> SourceConfig:
        if (self.url is None) == (self.query is None):
            raise ValueError("set exactly one of url (a CSV or Parquet file) or query (SQL)")
        return self


class DataConfig(Section):
    path: Path = Path("data/loans.csv")
    read: ReadConfig = ReadConfig()
    source: SourceConfig | None = None  # null: `make data-refresh` re-runs `make data` (sample, or dvc pull)
    sample: SampleConfig = SampleConfig()


class SchemaConfig(Section):
    target: str
    task: Task
    positive_class: str | int | None = None
    drop: list[str] = []
    numeric: list[str] | None = None
    categorical: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SchemaConfig:
        if self.positive_class is not None and self.task != "binary":
            raise ValueError("positive_class only applies to task: binary; remove it")
        listed = (self.numeric or []) + (self.categorical or [])
        clash = sorted({self.target, *self.drop} & set(listed))
        if clash:
            raise ValueError(f"columns {clash} are listed as features but are the target or dropped")
        both = sorted(set(self.numeric or []) & set(self.categorical or []))
        if both:
            raise ValueError(f"columns {both} are listed as both numeric and categorical")
        return self


class PrepConfig(Section):
    test_size: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = 42
    output_dir: Path = Path("artifacts/prepared")


EstimatorName = Literal["logistic_regression", "ridge", "random_forest", "hist_gradient_boosting"]


class TrainConfig(Section):
    estimator: EstimatorName = "hist_gradient_boosting"
    seed: int = 42
    output_dir: Path = Path("artifacts/candidate")
    logistic_regression: dict[str, Any] = {}
    ridge: dict[str, Any] = {}
    random_forest: dict[str, Any] = {}
    hist_gradient_boosting: dict[str, Any] = {}

    def hyperparameters(self) -> dict[str, Any]:
        return dict(getattr(self, self.estimator))


class RobustnessConfig(Section):
    """Model security figures that `evaluate` adds to the metrics (the gate can bound them)."""

    evasion: bool = True
    membership: bool = True
    rows: int = Field(200, ge=1)  # test rows attacked (seeded sample)
    budget: float = Field(0.05, gt=0.0, le=1.0)  # attacker's L-inf budget, as a fraction of each feature's range
    tries: int = Field(16, ge=2)  # candidate perturbations per row and budget
    membership_rows: int = Field(2000, ge=50)  # train and test rows each for the membership attack
    seed: int = 42


class EvaluateConfig(Section):
    metrics_path: Path = Path("reports/metrics.json")
    plots_dir: Path = Path("reports/plots")
    importance_rows: int = Field(2000, gt=0)
    curve_points: int = Field(200, ge=10)
    robustness: RobustnessConfig = RobustnessConfig()


class Threshold(Section):
    metric: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if (self.min is None) == (self.max is None):
            raise ValueError(f"threshold for {self.metric!r} needs exactly one of min or max")
        return self


class GateConfig(Section):
    bundle_dir: Path = Path("artifacts/model")
    report_path: Path = Path("reports/gate.md")
    thresholds: list[Threshold] = []
    tolerance: dict[str, float] = {"default": 0.01}

    def tolerance_for(self, metric: str) -> float:
        return self.tolerance.get(metric, self.tolerance.get("default", 0.0))


class ProfileConfig(Section):
    bins: int = Field(10, ge=2, le=100)
    min_category_fraction: float = Field(0.01, ge=0.0, lt=1.0)
    max_categories: int = Field(50, ge=1)
    reference_sample: int = Field(1000, ge=50)
    seed: int = 42


DriftMeasure = Literal["psi", "test", "js", "kl", "wasserstein"]


class DriftConfig(Section):
    decide_on: list[DriftMeasure] = Field(["psi", "test"], min_length=1)
    psi_threshold: float = Field(0.2, gt=0.0)
    p_value: float = Field(0.01, gt=0.0, lt=1.0)
    min_effect: float = Field(0.1, ge=0.0)
    js_threshold: float = Field(0.15, gt=0.0, le=1.0)
    kl_threshold: float = Field(0.1, gt=0.0)
    wasserstein_threshold: float = Field(0.3, gt=0.0)
    min_rows: int = Field(200, ge=1)
    window_size: int = Field(5000, ge=10)
    refresh_seconds: float = Field(15.0, ge=0.0)
    output_dir: Path = Path("reports/drift")


class FeedbackConfig(Section):
    capacity: int = Field(100_000, ge=1)
    ttl_seconds: float = Field(86_400.0, gt=0.0)
    window_size: int = Field(1000, ge=10)
    min_feedback: int = Field(100, ge=1)
    regression_tolerance: float = Field(0.1, gt=0.0)
    min_accuracy: float = Field(0.68, ge=0.0, le=1.0)
    flush_seconds: float = Field(0.5, gt=0.0)


class ExperimentConfig(Section):
    mode: Literal["single", "ab", "shadow", "bandit"] = "single"
    name: str = Field("experiment-1", min_length=1)
    challenger_share: float = Field(0.1, ge=0.0, le=1.0)
    min_samples: int = Field(200, ge=1)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    test: Literal["fixed", "sequential"] = "fixed"
    min_detectable_effect: float = Field(0.05, gt=0.0, lt=1.0)
    power: float = Field(0.8, gt=0.0, lt=1.0)
    baseline_rate: float | None = Field(None, gt=0.0, lt=1.0)
    bandit: Literal["thompson", "epsilon_greedy", "ucb1"] = "thompson"
    epsilon: float = Field(0.1, gt=0.0, lt=1.0)
    seed: int = 42


class RateLimitConfig(Section):
    enabled: bool = True
    requests_per_second: float = Field(50.0, gt=0.0)
    burst: int = Field(100, ge=1)
    max_clients: int = Field(10_000, ge=1)
    # with REDIS_URL: the share of `burst` a process takes from the shared bucket in one round trip (0 = exact)
    shared_lease: float = Field(0.1, ge=0.0, le=1.0)


class MonitoringConfig(Section):
    profile: ProfileConfig = ProfileConfig()
    drift: DriftConfig = DriftConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    experiment: ExperimentConfig = ExperimentConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()


class OnnxConfig(Section):
    """The verified ONNX fast path: exported at train time, kept only when it reproduces sklearn."""

    enabled: bool = True
    probability_tolerance: float = Field(1e-4, gt=0.0)
    regression_rtol: float = Field(1e-5, gt=0.0)
    opset: int = Field(17, ge=13)


class TrackingConfig(Section):
    """MLflow tracking and registry: off unless MLFLOW_TRACKING_URI is set or `mlflow` names an experiment."""

    mlflow: str | None = Field(None, min_length=1)  # experiment name (default: the project name)
    required: bool = False  # true: a tracking failure fails the stage; false: a warning, the pipeline goes on
    registered_model: str | None = Field(None, min_length=1)  # registry name (default: the project name)
    run_file: Path = Path("reports/mlflow-run.json")  # the run's id and link, for the CI report


class Params(Section):
    """The whole of params.yaml. Estimator hyper-parameters are checked by pipeline.models (sklearn)."""

    data: DataConfig = DataConfig()
    schema_: SchemaConfig = Field(alias="schema")
    prep: PrepConfig = PrepConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    gate: GateConfig = GateConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    onnx: OnnxConfig = OnnxConfig()
    tracking: TrackingConfig = TrackingConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def invalid(source: Path, lines: list[str]) -> UserError:
    """One error for params.yaml mistakes: the file, then one line per key."""
    return UserError("\n".join([f"{source}: invalid parameters", *lines]))


def _describe(error: ValidationError, source: Path) -> UserError:
    lines = []
    for item in error.errors():
        # a key with control characters (a line separator, say) is quoted, so the error stays one line per key
        where = ".".join(str(p) if str(p).isprintable() else repr(p) for p in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against README 'params.yaml reference'"
        elif "input" in item and item["type"] != "missing":
            shown = repr(item["input"])
            message += f" (got {shown if len(shown) <= SHOWN_CHARS else shown[: SHOWN_CHARS - 3] + '...'})"
        lines.append(f"  - {where}: {message}")
    return invalid(source, lines)


def _expanded_size(value: Any, limit: int) -> int:
    """How many values `value` holds with aliases expanded (as validation walks it); stops counting past `limit`."""
    count, stack = 0, [value]
    while stack and count <= limit:  # iterative: a self-referencing alias is a cycle, counted up to the limit
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack += [*item, *item.values()]
        elif isinstance(item, list):
            stack += item
    return count


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate params.yaml; every mistake becomes a UserError naming the key and the fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found; run from the project root or pass --params")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: not UTF-8, or an impossible date such as 2026-02-30
        problem = " ".join(str(exc).split())  # PyYAML's messages span lines: one line per error here
        raise UserError(f"{path}: not valid YAML: {problem}") from None
    except RecursionError:
        raise UserError(f"{path}: not valid YAML: nested too deeply") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of sections (data, schema, prep, ...)")
    if _expanded_size(raw, MAX_VALUES) > MAX_VALUES:
        raise UserError(
            f"{path}: holds more than {MAX_VALUES} values once its YAML aliases (*name) are expanded; "
            "use anchors for a few shared values, not nested repeats"
        )
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise _describe(exc, path) from None
