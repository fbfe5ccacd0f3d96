"""The post-deploy smoke test and the CT metrics fetch against the real service (not a stand-in)."""

import json

import pytest

from mlops_template.cli import main
from mlops_template.core.bundle import read_metadata

pytestmark = pytest.mark.integration


def test_smoke_test_and_fetch_metrics_against_the_real_service(live_server, served_bundle, tmp_path, capsys):
    server = live_server(served_bundle)
    assert main(["smoke-test", "--url", server.url, "--wait", "30"]) == 0
    output = tmp_path / "production-metrics.json"
    assert main(["fetch-metrics", "--url", server.url, "--output", str(output)]) == 0
    assert json.loads(output.read_text()) == read_metadata(served_bundle).metrics


def test_smoke_test_fails_on_a_service_that_is_down(tmp_path, capsys):
    assert main(["smoke-test", "--url", "http://127.0.0.1:9", "--wait", "1"]) == 2
    assert "error:" in capsys.readouterr().err
