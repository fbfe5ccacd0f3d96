"""Real Streamlit servers and a real headless Chromium (Debian chromium + chromium-driver, driven by Selenium).

One stack per model kind (bundle -> service -> Streamlit), shared by that kind's tests; one browser for all.
The sample model's service keeps its monitoring state in a real redis-server (REDIS_URL) that a test stops and
starts again, serves two challengers in shadow, and dates its bundle from a real git history of its dvc.lock.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT, free_port, require_tool, sh, write_params
from tests.integration.conftest import LiveServer, RedisServer, running_server
from tests.serving_helpers import REGRESSION, build_bundle

# the committed screenshots (README) are refreshed only on request: `UI_SCREENSHOTS=reports/ui make test`;
# otherwise they go to a scratch folder, so a test run leaves the work tree clean
SCREENSHOTS = Path(os.environ.get("UI_SCREENSHOTS") or tempfile.mkdtemp(prefix="ui-screenshots-"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1800"]  # fmt: skip
ADMIN_KEY = "ui-test-admin-key"  # the test's own key for POST /feedback and /predict (the UI sends none)
PREDICT_KEY = "ui-test-predict-key"  # the UI's key (PREDICT_API_KEY): its own rate-limit bucket on /predict
MULTICLASS = {"target": "property_area", "task": "multiclass", "positive_class": None, "drop": ["loan_id"]}
CHALLENGERS = ("alpha", "beta")  # the sample bundle again, twice, as named challengers (shadow: same answers)
COMMITTED_EPOCH = 1_780_086_400  # when the binary stack's dvc.lock recorded its bundle: 2026-05-29T20:26:40Z
BUNDLES = {  # other forks' models: a regression and a multiclass one
    "regression": ("ridge", REGRESSION),
    "multiclass": ("logistic_regression", MULTICLASS),
}


@dataclass
class Stack:
    kind: str
    bundle: Path
    data: Path  # the CSV the bundle was trained on (a realistic upload)
    service: LiveServer
    ui: str
    model: dict[str, Any]
    headers: dict[str, str]  # what the test sends with its own /predict calls (a key when the service wants one)
    redis: RedisServer | None = None  # the service's REDIS_URL, when it has one


@contextmanager
def streamlit_app(api_url: str, log_dir: Path, timeout: float = 90, **extra: str) -> Iterator[str]:
    """`python -m mlops_template ui` (what `make ui` runs) on a free port, no file watcher; yields its URL."""
    port = free_port()
    env = {**os.environ, "API_URL": api_url, "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none", "PYTHONUNBUFFERED": "1",
           **extra}  # fmt: skip
    log = log_dir / f"streamlit-{port}.log"
    with open(log, "w", encoding="utf-8") as handle:
        process = subprocess.Popen([sys.executable, "-m", "mlops_template", "ui", "--port", str(port)], cwd=ROOT,
                                   env=env, stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(f"streamlit exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit not up within {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def stack(kind: str, bundle: Path, data: Path, directory: Path, ui_env: dict[str, str] | None = None,
          headers: dict[str, str] | None = None, **env: str) -> Iterator[Stack]:  # fmt: skip
    with running_server(bundle, directory, **env) as service, \
            streamlit_app(service.url, directory, **(ui_env or {})) as ui:  # fmt: skip
        model = httpx.get(f"{service.url}/model", timeout=10).json()
        yield Stack(kind, bundle, data, service, ui, model, headers or {})


def committed_checkout(directory: Path, bundle: Path) -> Path:
    """`directory` as a project checkout: the bundle under artifacts/model and a dvc.lock recording it, committed at
    COMMITTED_EPOCH (what `make serve` dates the bundle by: core/provenance.py); returns the bundle's copy."""
    served = directory / "artifacts" / "model"
    shutil.copytree(bundle, served)
    lock = {
        "schema": "2.0",
        "stages": {
            "gate": {
                "cmd": "python -m mlops_template gate",
                "outs": [{"path": "artifacts/model", "hash": "md5", "md5": "ui.dir"}],
            }
        },
    }
    (directory / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    date = f"@{COMMITTED_EPOCH} +0000"
    sh(directory, "git", "init", "-q", "-b", "main")
    sh(directory, "git", "add", "dvc.lock")
    sh(directory, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "the bundle",
       env={"GIT_COMMITTER_DATE": date, "GIT_AUTHOR_DATE": date})  # fmt: skip
    return served


@pytest.fixture(scope="module")
def binary_stack(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The sample model as the real pipeline made it (metrics, gate thresholds, feature importance); its service
    takes feedback (admin key), recomputes live drift every second, reports live quality from 20 answers, and wants
    a key on /predict, each key (and address) with a bucket of 100 requests and next to no refill (a 429 the test
    can cause at will). Its monitoring state lives in its own redis-server (REDIS_URL), two challengers (the same
    bundle) follow in shadow with the sequential test, and it is served from a checkout whose dvc.lock history
    dates the bundle (no MODEL_COMMITTED_AT given: the service finds it, as with `make run`)."""
    directory = tmp_path_factory.mktemp("ui-binary")
    monitoring = yaml.safe_load((ROOT / "params.yaml").read_text())["monitoring"]
    drift, feedback = {**monitoring["drift"], "refresh_seconds": 1}, {**monitoring["feedback"], "min_feedback": 20}
    # next to no refill (one token per 1000 s): the bucket the test empties stays empty for the UI's next click
    limit = {**monitoring["rate_limit"], "requests_per_second": 0.001, "burst": 100}
    experiment = {**monitoring["experiment"], "mode": "shadow", "test": "sequential"}  # a p-value from the start
    params = write_params(directory, monitoring={"drift": drift, "feedback": feedback, "rate_limit": limit,
                                                 "experiment": experiment})  # fmt: skip
    bundle = committed_checkout(directory, trained / "artifacts" / "model")
    redis = RedisServer(free_port(), tmp_path_factory.mktemp("ui-redis"))
    redis.start()
    try:
        with stack("binary", bundle, trained / "data" / "loans.csv", directory,
                   ui_env={"PREDICT_API_KEY": PREDICT_KEY}, headers={"X-API-Key": ADMIN_KEY}, ADMIN_API_KEYS=ADMIN_KEY,
                   PREDICT_API_KEYS=PREDICT_KEY, PARAMS_FILE=str(params), REDIS_URL=redis.url,
                   CHALLENGER_MODEL_DIR=",".join(f"{name}={bundle}" for name in CHALLENGERS)) as running:  # fmt: skip
            running.redis = redis
            yield running
    finally:
        redis.stop()


@pytest.fixture(scope="module", params=["regression", "multiclass"])
def other_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Other forks' models: small bundles of another task, target and estimator (tests/serving_helpers.py)."""
    directory = tmp_path_factory.mktemp(f"ui-{request.param}")
    estimator, schema = BUNDLES[request.param]
    bundle = build_bundle(directory, estimator, rows=2000, schema=schema)
    with stack(request.param, bundle, directory / "data.csv", directory) as running:
        yield running


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium through chromedriver (both from Debian: `make system-deps`); a fresh profile."""
    chromium = require_tool("chromium", "Debian package chromium (make system-deps)")
    chromedriver = require_tool("chromedriver", "Debian package chromium-driver (make system-deps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
