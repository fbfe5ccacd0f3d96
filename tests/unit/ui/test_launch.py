"""How the UI is started: `make ui` / the CLI / compose all run the same Streamlit command."""

from __future__ import annotations

import re

import yaml

from mlops_template.ui.launch import APP, streamlit_argv
from tests.conftest import ROOT


def test_streamlit_runs_the_app_headless_without_telemetry():
    argv = streamlit_argv("0.0.0.0", 8600)
    assert argv[1:5] == ["-m", "streamlit", "run", str(APP)] and APP.is_file()
    assert {"--server.headless=true", "--browser.gatherUsageStats=false", "--server.address=0.0.0.0",
            "--server.port=8600", "--client.showErrorDetails=type"} <= set(argv)  # fmt: skip


def test_make_ui_and_compose_start_it_through_the_cli():
    assert "$(CLI) ui" in (ROOT / "Makefile").read_text()
    ui = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["ui"]
    assert ui["build"]["target"] == "ui" and ui["environment"]["API_URL"] == "http://service:8000"
    assert "service" in ui["depends_on"]


def test_compose_service_serves_the_bundle_the_image_carries():
    """The compose `service` once pointed MODEL_DIR at a path the image does not have (it exited at start)."""
    env = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["service"]["environment"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY --from=builder /opt/model /app/model" in dockerfile
    assert env["MODEL_DIR"] == "/app/model"


def test_the_browser_tests_chromium_is_installed_by_the_projects_own_files():
    """CI fails rather than skips the browser tests: .ci/run and ci.yml run `make system-deps`, whose APT_PACKAGES
    hold Debian's chromium and chromium-driver; Selenium is pinned in requirements-dev.txt."""
    makefile = (ROOT / "Makefile").read_text()
    packages = next(line for line in makefile.splitlines() if line.startswith("APT_PACKAGES ?="))
    assert {"chromium", "chromium-driver"} <= set(packages.split("?=", 1)[1].split())
    assert "make system-deps" in (ROOT / ".ci" / "run").read_text()
    steps = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())["jobs"]["test"]["steps"]
    assert any(step.get("run") == "make system-deps" for step in steps)
    assert re.search(r"^selenium==\S+", (ROOT / "requirements-dev.txt").read_text(), re.MULTILINE)
