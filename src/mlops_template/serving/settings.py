"""Deployment settings from environment variables (12-factor); behaviour stays in params.yaml."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from mlops_template.core.errors import UserError
from mlops_template.monitoring.experiment import CHAMPION
from mlops_template.monitoring.feedback import SERVED
from mlops_template.monitoring.security import ApiKeys

RUNTIMES = ("auto", "onnx", "sklearn")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SWITCHES = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}
# an arm's name: a Prometheus label value, a Redis key part and a JSON key; `champion` and `served` are taken
ARM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
RESERVED_ARMS = (CHAMPION, SERVED)


class ChallengerDir(NamedTuple):
    """One challenger bundle of CHALLENGER_MODEL_DIR: its folder and the arm name given to it (None: derived)."""

    name: str | None
    path: Path


def check_arm_name(name: str) -> str:
    """`name` when it can name an arm; ValueError saying what a name may be."""
    if not ARM_NAME.fullmatch(name) or name in RESERVED_ARMS:
        raise ValueError(f"arm name {name!r}: expected 1-63 letters, digits, '.', '_' or '-' (starting with a letter "
                         f"or digit), not {' or '.join(RESERVED_ARMS)}")  # fmt: skip
    return name


def parse_challengers(value: str) -> tuple[ChallengerDir, ...]:
    """CHALLENGER_MODEL_DIR: comma-separated bundle folders, each `path` or `name=path` (a name holds no `/`)."""
    found = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        name, sep, path = item.partition("=")
        if sep and "/" not in name:
            found.append(ChallengerDir(check_arm_name(name.strip()), Path(path.strip())))
        else:
            found.append(ChallengerDir(None, Path(item)))
    return tuple(found)


def default_model_dir(params_file: str | Path = "params.yaml") -> Path:
    """gate.bundle_dir from params.yaml when it is there (a clone), else its default (an image)."""
    from mlops_template.core.config import GateConfig, load_params

    if Path(params_file).is_file():
        return load_params(params_file).gate.bundle_dir
    return GateConfig().bundle_dir


def env(name: str, default: Any = ..., **constraints: Any) -> Any:
    """A field read from the environment variable `name` (the field's own name works in code and tests too)."""
    return Field(default, validation_alias=name, **constraints)


class Environ(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping, values stripped (blank = unset)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self.environ = environ
        super().__init__(settings_cls)
        # only the documented names (MAX_BATCH_ROWS), not the field names code may pass (max_batch_rows)
        self.config = {**self.config, "validate_by_name": False}

    def _load_env_vars(self) -> Mapping[str, str | None]:  # the hook pydantic-settings' own .env source overrides
        stripped = {name: value.strip() for name, value in self.environ.items()}
        return parse_env_vars(stripped, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class Settings(BaseSettings):
    """Everything the service reads from the environment; see README "Serving the model"."""

    model_config = SettingsConfigDict(frozen=True, case_sensitive=True, env_ignore_empty=True, populate_by_name=True,
                                      protected_namespaces=())  # fmt: skip

    model_dir: Path = env("MODEL_DIR")  # from_env: params.yaml gate.bundle_dir when unset
    max_batch_rows: int = env("MAX_BATCH_ROWS", 10_000, ge=1)
    max_body_bytes: int = env("MAX_BODY_BYTES", 8 * 1024 * 1024, ge=1024)
    log_level: Literal[LOG_LEVELS] = env("LOG_LEVEL", "INFO")  # type: ignore[valid-type]
    # auto = ONNX when the bundle's parity check passed, else sklearn
    model_runtime: Literal[RUNTIMES] = env("MODEL_RUNTIME", "auto")  # type: ignore[valid-type]
    model_threads: int = env("MODEL_THREADS", 1, ge=1)  # BLAS/OpenMP threads per process: scale with WEB_CONCURRENCY
    # larger batches run in a worker thread (the event loop stays free); smaller ones share model calls
    thread_rows: int = env("THREAD_ROWS", 64, ge=1)
    host: str = env("HOST", "0.0.0.0")  # a container must listen on all interfaces
    port: int = env("PORT", 8000, ge=0)
    workers: int = env("WEB_CONCURRENCY", 1, ge=1)
    graceful_timeout: int = env("GRACEFUL_TIMEOUT", 25, ge=0)  # seconds after SIGTERM (Heroku/k8s kill at 30)
    params_file: Path = env("PARAMS_FILE", Path("params.yaml"))  # `monitoring` drives drift, feedback, A/B, limits
    # challenger bundles (VALIDATED, same requests) for ab/shadow/bandit: `path` or `name=path`, comma-separated
    challengers: Annotated[tuple[ChallengerDir, ...], NoDecode] = env("CHALLENGER_MODEL_DIR", ())
    experiment_mode: str | None = env("EXPERIMENT_MODE", None)  # overrides monitoring.experiment.mode
    rate_limit: bool | None = env("RATE_LIMIT", None)  # overrides monitoring.rate_limit.enabled (off: benchmarks)
    # monitoring state shared by all processes (monitoring/shared.py); unset: per process, no Redis needed
    redis_url: str | None = env("REDIS_URL", None)
    cors_origins: Annotated[tuple[str, ...], NoDecode] = env("CORS_ORIGINS", ())  # CORS is off unless listed
    model_uri: str | None = env("MODEL_URI", None)  # models:/<name>@champion: downloaded first (serving.model_uri)
    # the commit the deployment was built from (the image's build argument); the bundle records none (reproducible)
    git_commit: str | None = env("GIT_COMMIT", None)
    # when a commit first recorded the served bundle in dvc.lock (core/provenance.py; the image's build argument,
    # `make serve` in a checkout): the bundle records no clock time (reproducible). ISO 8601 with an offset
    model_committed_at: str | None = env("MODEL_COMMITTED_AT", None)
    # /predict needs one of these keys (or an admin key) in X-API-Key; unset: /predict is open. Read straight into
    # sha256 digests (security.ApiKeys): no key is held, and `exclude` keeps even those out of public() and dumps
    predict_api_keys: Annotated[ApiKeys, NoDecode] = env("PREDICT_API_KEYS", ApiKeys(()), exclude=True)
    # digits the /predict probabilities are rounded to (model-extraction mitigation); unset: full precision
    output_precision: int | None = env("OUTPUT_PRECISION", None, ge=0, le=15)
    protect_metadata: bool = env("PROTECT_METADATA", False)  # true: /model, /experiment, drift need an admin key
    # ADMIN_API_KEYS is deliberately not a setting: create_app reads it once into digests (security.ApiKeys)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # `Settings(...)` is exactly what it says; only from_env reads the environment

    @field_validator("log_level", "model_runtime", "experiment_mode", mode="before")
    @classmethod
    def _case(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        return value.upper() if info.field_name == "log_level" else value.lower()

    @field_validator("rate_limit", "protect_metadata", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.lower() not in SWITCHES:
            raise ValueError("expected on or off")
        return SWITCHES[value.lower()]

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected redis://[user:password@]host:port[/db], rediss://... (TLS) or unix://path")
        return value

    @field_validator("model_committed_at")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise ValueError("expected an ISO 8601 time with its offset, e.g. 2026-01-31T12:00:00+00:00")
        return moment.astimezone(UTC).isoformat(timespec="seconds")

    @field_validator("predict_api_keys", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        return ApiKeys.parse(value) if isinstance(value, str) else value

    @field_validator("challengers", mode="before")
    @classmethod
    def _challengers(cls, value: Any) -> Any:
        return parse_challengers(value) if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        return tuple(o.strip() for o in value.split(",") if o.strip()) if isinstance(value, str) else value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings from environment variables (os.environ by default): one UserError naming the variable."""
        values = Environ(cls, os.environ if environ is None else environ)()
        if "MODEL_DIR" not in values:
            values["MODEL_DIR"] = default_model_dir(values.get("PARAMS_FILE", "params.yaml"))
        try:
            return cls(**values)
        except ValidationError as exc:
            raise UserError(_message(exc.errors()[0], values)) from None

    def public(self) -> dict[str, object]:
        """For the start-up log line: no secrets live here, and none may be added to this output."""
        values = {name: str(value) if isinstance(value, Path) else value for name, value in self.model_dump().items()}
        values["challengers"] = [f"{c.name}={c.path}" if c.name else str(c.path) for c in self.challengers]
        if self.redis_url:  # redis://user:password@host: the password stays out of logs
            values["redis_url"] = redact_url(self.redis_url)
        return values


def redact_url(url: str) -> str:
    """`url` with the password of its user part (scheme://user:password@host) replaced by ***."""
    scheme, sep, rest = url.partition("://")
    user, at, host = rest.rpartition("@")
    if not (sep and at and ":" in user):
        return url
    return f"{scheme}://{user.split(':', 1)[0]}:***@{host}"


def _message(error: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    """Today's wording for a bad environment variable (pydantic's error types mapped to what to fix)."""
    name = str(error["loc"][0])
    raw = values.get(name, error["input"])
    if name == "REDIS_URL":
        raw = redact_url(str(raw))
    ctx = error.get("ctx") or {}
    if error["type"] == "int_parsing":
        return f"environment variable {name}={raw!r}: expected an integer"
    if error["type"] == "greater_than_equal":
        return f"environment variable {name}={raw}: must be at least {ctx['ge']}"
    if error["type"] == "less_than_equal":
        return f"environment variable {name}={raw}: must be at most {ctx['le']}"
    if error["type"] == "literal_error":
        allowed = LOG_LEVELS if name == "LOG_LEVEL" else RUNTIMES
        return f"environment variable {name}={raw!r}: expected one of {', '.join(allowed)}"
    return f"environment variable {name}={raw!r}: {error['msg'].removeprefix('Value error, ')}"
