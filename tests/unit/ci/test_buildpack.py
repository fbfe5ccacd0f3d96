"""ci/buildpack.py without DVC: the Google key config var becomes a private file for the pull only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mlops_template.ci.buildpack import KEY_VARIABLE, check_credentials, google_key
from mlops_template.core.errors import UserError


def test_the_key_config_var_is_a_private_file_during_the_pull_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VARIABLE, '{"type": "service_account"}')
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    with google_key():
        path = Path(os.environ["GOOGLE_APPLICATION_CREDENTIALS"])
        assert path.read_text() == '{"type": "service_account"}'
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.exists()
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in os.environ


def test_a_key_that_is_not_json_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VARIABLE, "key.json")
    with pytest.raises(UserError, match=f"{KEY_VARIABLE} is not JSON"), google_key():
        pass


def test_a_gcs_remote_without_credentials_is_refused_before_dvc_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    with pytest.raises(UserError, match="no credentials for the DVC remote gs://b/dvc: set the app's config var"):
        check_credentials("gs://b/dvc")
    check_credentials("/srv/dvc-remote")  # a local or other remote: its own plugin decides
    monkeypatch.setenv(KEY_VARIABLE, "{}")
    check_credentials("gs://b/dvc")
