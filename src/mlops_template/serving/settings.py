"""Deployment settings from environment variables (12-factor); behaviour stays in params.yaml."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from mlops_template.core.errors import UserError

RUNTIMES = ("auto", "onnx", "sklearn")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SWITCHES = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


def default_model_dir(params_file: str | Path = "params.yaml") -> Path:
    """gate.bundle_dir from params.yaml when it is there (a clone), else its default (an image)."""
    from mlops_template.core.config import GateConfig, load_params

    if Path(params_file).is_file():
        return load_params(params_file).gate.bundle_dir
    return GateConfig().bundle_dir


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from the environment; see README "Serving the model"."""

    model_dir: Path
    max_batch_rows: int = 10_000
    max_body_bytes: int = 8 * 1024 * 1024
    log_level: str = "INFO"
    model_runtime: str = "auto"  # auto = ONNX when the bundle's parity check passed, else sklearn
    model_threads: int = 1  # BLAS/OpenMP threads per process: scale with WEB_CONCURRENCY, not threads
    thread_rows: int = 64  # larger batches run in a worker thread (the event loop stays free); smaller share calls
    host: str = "0.0.0.0"  # a container must listen on all interfaces
    port: int = 8000
    workers: int = 1
    graceful_timeout: int = 25  # seconds in-flight requests get after SIGTERM (Heroku/k8s kill at 30)
    params_file: Path = Path("params.yaml")  # its `monitoring` section drives drift, feedback, A/B, rate limits
    challenger_dir: Path | None = None  # a second VALIDATED bundle for ab / shadow / bandit
    experiment_mode: str | None = None  # overrides monitoring.experiment.mode
    rate_limit: bool | None = None  # overrides monitoring.rate_limit.enabled (off only for benchmarks)
    cors_origins: tuple[str, ...] = ()  # CORS is off unless origins are listed
    model_uri: str | None = None  # MODEL_URI (models:/<name>@champion): downloaded first (serving.model_uri)
    # ADMIN_API_KEYS is deliberately not a setting: create_app reads it once into digests (security.ApiKeys)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)

        def number(name: str, default: int, minimum: int = 1) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise UserError(f"environment variable {name}={raw!r}: expected an integer") from None
            if value < minimum:
                raise UserError(f"environment variable {name}={value}: must be at least {minimum}")
            return value

        def choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
            value = env.get(name, "").strip() or default
            normalized = value.upper() if allowed is LOG_LEVELS else value.lower()
            if normalized not in allowed:
                raise UserError(f"environment variable {name}={value!r}: expected one of {', '.join(allowed)}")
            return normalized

        model_dir = env.get("MODEL_DIR", "").strip()
        challenger = env.get("CHALLENGER_MODEL_DIR", "").strip()
        switch = env.get("RATE_LIMIT", "").strip().lower()
        if switch and switch not in SWITCHES:
            raise UserError(f"environment variable RATE_LIMIT={switch!r}: expected on or off")
        return cls(
            model_dir=Path(model_dir) if model_dir else default_model_dir(env.get("PARAMS_FILE", "params.yaml")),
            max_batch_rows=number("MAX_BATCH_ROWS", cls.max_batch_rows),
            max_body_bytes=number("MAX_BODY_BYTES", cls.max_body_bytes, minimum=1024),
            log_level=choice("LOG_LEVEL", cls.log_level, LOG_LEVELS),
            model_runtime=choice("MODEL_RUNTIME", cls.model_runtime, RUNTIMES),
            model_threads=number("MODEL_THREADS", cls.model_threads),
            thread_rows=number("THREAD_ROWS", cls.thread_rows),
            host=env.get("HOST", "").strip() or cls.host,
            port=number("PORT", cls.port, minimum=0),
            workers=number("WEB_CONCURRENCY", cls.workers),
            graceful_timeout=number("GRACEFUL_TIMEOUT", cls.graceful_timeout, minimum=0),
            params_file=Path(env.get("PARAMS_FILE", "").strip() or cls.params_file),
            challenger_dir=Path(challenger) if challenger else None,
            experiment_mode=env.get("EXPERIMENT_MODE", "").strip().lower() or None,
            rate_limit=SWITCHES[switch] if switch else None,
            cors_origins=tuple(o.strip() for o in env.get("CORS_ORIGINS", "").split(",") if o.strip()),
            model_uri=env.get("MODEL_URI", "").strip() or None,
        )

    def public(self) -> dict[str, object]:
        """For the start-up log line: no secrets live here, and none may be added to this output."""
        return {name: str(value) if isinstance(value, Path) else value for name, value in asdict(self).items()}
