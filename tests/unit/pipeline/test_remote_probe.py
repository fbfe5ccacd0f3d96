"""The gs:// remote probe's parts: which options and endpoint it reads (gcsfs's order), and that only a connection
nobody answers counts as unreachable (any HTTP answer, even an error status, is left to DVC)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_template.pipeline import remote_probe
from tests.conftest import FakeHandler, free_port, loopback_server

LISTED = "core.remote=storage\nremote.storage.url=gs://b/dvc\nremote.storage.endpointurl=http://gcs.local:9000\n"


def test_the_remotes_options_from_dvc_config_list() -> None:
    assert remote_probe.options(LISTED, "storage") == {"url": "gs://b/dvc", "endpointurl": "http://gcs.local:9000"}
    assert remote_probe.options(LISTED, "other") == {}


def test_the_endpoint_in_gcsfs_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")
    assert remote_probe.endpoint({"endpointurl": "https://gcs.local"}) == "https://gcs.local"
    assert remote_probe.endpoint({}) == "http://127.0.0.1:4443"
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    assert remote_probe.endpoint({}) == "https://storage.googleapis.com"


def test_only_a_connection_nobody_answers_is_unreachable() -> None:
    class Refusing(FakeHandler):
        def do_GET(self) -> None:
            self.reply(401, {"error": "no credentials"})

    with loopback_server(Refusing) as url:
        assert remote_probe.unreachable(url) is None
    port = free_port()
    assert remote_probe.unreachable(f"http://127.0.0.1:{port}") == (
        f"Cannot connect to host 127.0.0.1:{port} ssl:default [Connect call failed ('127.0.0.1', {port})]"
    )


def test_other_schemes_are_left_to_dvc() -> None:
    assert remote_probe.problem("s3://bucket/dvc", {}) is None
    assert remote_probe.problem("/mnt/storage", {}) is None


def test_a_key_file_it_cannot_use_is_left_to_dvc(tmp_path: Path) -> None:
    """No such file, or not a key file: no token request is possible, so DVC runs and reports it."""
    (tmp_path / "not-a-key.json").write_text("{}", encoding="utf-8")
    assert remote_probe.refused(str(tmp_path / "absent.json")) is None
    assert remote_probe.refused(str(tmp_path / "not-a-key.json")) is None
