"""Settings through pydantic-settings: environment names, blanks, one clear message per bad variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_template.core.errors import UserError
from mlops_template.serving.settings import Settings


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MAX_BATCH_ROWS", "many", "environment variable MAX_BATCH_ROWS='many': expected an integer"),
        ("PORT", "1.5", "environment variable PORT='1.5': expected an integer"),
        ("MAX_BATCH_ROWS", "0", "environment variable MAX_BATCH_ROWS=0: must be at least 1"),
        ("MAX_BODY_BYTES", "100", "environment variable MAX_BODY_BYTES=100: must be at least 1024"),
        ("GRACEFUL_TIMEOUT", "-1", "environment variable GRACEFUL_TIMEOUT=-1: must be at least 0"),
        ("MODEL_RUNTIME", "GPU", "environment variable MODEL_RUNTIME='GPU': expected one of auto, onnx, sklearn"),
        ("LOG_LEVEL", "loud", "environment variable LOG_LEVEL='loud': expected one of DEBUG, INFO, WARNING, ERROR"),
        ("RATE_LIMIT", "maybe", "environment variable RATE_LIMIT='maybe': expected on or off"),
        ("PROTECT_METADATA", "yes please", "environment variable PROTECT_METADATA='yes please': expected on or off"),
        ("OUTPUT_PRECISION", "2.5", "environment variable OUTPUT_PRECISION='2.5': expected an integer"),
        ("OUTPUT_PRECISION", "-1", "environment variable OUTPUT_PRECISION=-1: must be at least 0"),
        ("OUTPUT_PRECISION", "16", "environment variable OUTPUT_PRECISION=16: must be at most 15"),
        (
            "MODEL_COMMITTED_AT",
            "yesterday",
            "environment variable MODEL_COMMITTED_AT='yesterday': expected an ISO "
            "8601 time with its offset, e.g. 2026-01-31T12:00:00+00:00",
        ),
        (
            "MODEL_COMMITTED_AT",
            "2026-01-31T12:00:00",
            "environment variable MODEL_COMMITTED_AT='2026-01-31T12:00:00': "
            "expected an ISO 8601 time with its offset, e.g. 2026-01-31T12:00:00+00:00",
        ),
    ],
)
def test_each_bad_variable_is_one_message_naming_it(variable: str, value: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        Settings.from_env({"MODEL_DIR": "m", variable: value})
    assert str(caught.value) == message


def test_names_case_blanks_and_lists() -> None:
    settings = Settings.from_env({"MODEL_DIR": " m ", "WEB_CONCURRENCY": "3", "PORT": "  ", "HOST": "",
                                  "LOG_LEVEL": "warning", "MODEL_RUNTIME": "ONNX", "RATE_LIMIT": "On",
                                  "CORS_ORIGINS": " https://a ,, https://b ", "max_batch_rows": "7"})  # fmt: skip
    assert (settings.model_dir, settings.workers, settings.port, settings.host) == (Path("m"), 3, 8000, "0.0.0.0")
    assert (settings.log_level, settings.model_runtime, settings.rate_limit) == ("WARNING", "onnx", True)
    assert settings.cors_origins == ("https://a", "https://b")
    assert settings.max_batch_rows == 10_000  # names are the upper-case ones only, as documented


def test_model_dir_defaults_to_the_params_bundle_dir(tmp_path: Path) -> None:
    from tests.conftest import write_params

    params = write_params(tmp_path, gate={"bundle_dir": str(tmp_path / "bundle")})
    assert Settings.from_env({"PARAMS_FILE": str(params)}).model_dir == tmp_path / "bundle"
    assert Settings.from_env({"PARAMS_FILE": str(tmp_path / "absent.yaml")}).model_dir == Path("artifacts/model")


def test_only_from_env_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9100")
    monkeypatch.setenv("MODEL_DIR", "from-env")
    assert Settings(model_dir=Path("explicit")).port == 8000  # code and tests say what they mean
    assert Settings.from_env().port == 9100 and Settings.from_env().model_dir == Path("from-env")
    assert Settings.from_env({"MODEL_DIR": "m"}).port == 8000  # a given mapping replaces os.environ
    public = Settings(model_dir=Path("m")).public()
    assert public["model_dir"] == "m" and public["port"] == 8000 and "admin" not in str(public).lower()
    with pytest.raises(ValueError, match="frozen"):
        Settings(model_dir=Path("m")).port = 1  # type: ignore[misc]


def test_redis_url_is_checked_and_its_password_never_shown() -> None:
    settings = Settings.from_env({"MODEL_DIR": "m", "REDIS_URL": "redis://app:hunter2@cache:6379/3"})
    assert settings.redis_url == "redis://app:hunter2@cache:6379/3"
    assert settings.public()["redis_url"] == "redis://app:***@cache:6379/3"
    assert Settings.from_env({"MODEL_DIR": "m"}).redis_url is None  # unset: state per process, no Redis
    with pytest.raises(UserError) as caught:
        Settings.from_env({"MODEL_DIR": "m", "REDIS_URL": "http://:hunter2@cache:6379"})
    assert "hunter2" not in str(caught.value)
    assert str(caught.value).startswith("environment variable REDIS_URL='http://:***@cache:6379': expected redis://")


def test_git_commit_is_the_images_build_argument() -> None:
    """The Dockerfile turns the GIT_COMMIT build argument into this variable; unset or blank (a local run): None."""
    assert Settings.from_env({"MODEL_DIR": "m", "GIT_COMMIT": "ab" * 20}).git_commit == "ab" * 20
    assert Settings.from_env({"MODEL_DIR": "m", "GIT_COMMIT": ""}).git_commit is None


def test_model_committed_at_is_an_iso_time_kept_in_utc() -> None:
    """MODEL_COMMITTED_AT (the image's build argument, `make serve`'s dvc.lock history): any offset, reported in UTC;
    unset or blank: None (unknown)."""
    moment = Settings.from_env({"MODEL_DIR": "m", "MODEL_COMMITTED_AT": "2026-05-29T22:26:40+02:00"})
    assert moment.model_committed_at == "2026-05-29T20:26:40+00:00"
    assert Settings.from_env({"MODEL_DIR": "m", "MODEL_COMMITTED_AT": " "}).model_committed_at is None


def test_access_settings_default_off_and_keys_held_as_digests_only() -> None:
    default = Settings.from_env({"MODEL_DIR": "m"})
    assert (default.predict_api_keys.digests, default.output_precision, default.protect_metadata) == ((), None, False)
    secret = "k-0123456789-secret"
    settings = Settings.from_env({"MODEL_DIR": "m", "PREDICT_API_KEYS": f" {secret} ,, other ", "OUTPUT_PRECISION": "3",
                                  "PROTECT_METADATA": "true"})  # fmt: skip
    assert settings.predict_api_keys.check(secret) == "ok" and settings.predict_api_keys.check("other") == "ok"
    assert len(settings.predict_api_keys.digests) == 2 and settings.predict_api_keys.check("k") == "invalid"
    assert (settings.output_precision, settings.protect_metadata) == (3, True)
    # neither the keys nor their digests reach the start-up log line or a dump
    shown = f"{settings.public()} {settings.model_dump()} {settings!r}"
    assert secret not in shown and "predict_api_keys" not in str(settings.public())
    assert settings.predict_api_keys.digests[0].hex() not in shown
