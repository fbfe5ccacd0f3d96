"""The Heroku buildpack deploy for real, done the way the Python buildpack does it, in clean directories.

A project copy runs the DVC pipeline and pushes to a DVC remote (as CI does); `git archive` of its commit is the
build directory (no .git); a fresh venv gets `pip install -r requirements.txt` only (the slug's Python);
`bin/post_compile` runs from the build directory with the config vars in its environment (the buildpack's
`sub_env`); the Procfile's `web` line runs under honcho with PORT set. The remote is the Google Cloud Storage
emulator (tests/object_store.py), the key a config var as on Heroku. The failure cases (no remote, no
credentials, a REJECTED bundle, a corrupt object in the remote) must fail the hook, the build, with one line.
Refused credentials are tests/integration/pipeline/test_remote.py's (gcsfs's back-off costs minutes here).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import httpx
import pytest
import yaml

from mlops_template.ci.buildpack import KEY_VARIABLE
from tests.conftest import ROOT, dvc_project_copy, free_port, require_tool, sh
from tests.object_store import BUCKET, ObjectStore

pytestmark = pytest.mark.integration
SLUG_LIMIT = 500 * 2**20  # Heroku's limit is on the compressed slug; the uncompressed size is compared: stricter


def commit(repo: Path, message: str) -> str:
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)
    return sh(repo, "git", "rev-parse", "HEAD").stdout.strip()


def archive(repo: Path, rev: str, destination: Path) -> Path:
    """What Heroku's build receives: the commit's tree, without .git."""
    destination.mkdir(parents=True)
    tar = subprocess.run(["git", "archive", rev], cwd=repo, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(destination)], input=tar, check=True)
    return destination


def corrupt(store: ObjectStore, prefix: str, content: bytes) -> None:
    """The remote's object holding `content` gets other bytes (DVC does not re-hash what it downloads)."""
    md5 = hashlib.md5(content).hexdigest()
    name = urllib.parse.quote(f"{prefix}/files/md5/{md5[:2]}/{md5[2:]}", safe="")
    assert f"{prefix}/files/md5/{md5[:2]}/{md5[2:]}" in store.objects(prefix)
    upload = f"{store.endpoint}/upload/storage/v1/b/{store.bucket}/o?uploadType=media&name={name}"
    request = urllib.request.Request(upload, data=content + b"tampered", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def clean_env(runtime: Path, **config_vars: str) -> dict[str, str]:
    """The hook's environment: the slug's Python first on PATH, the app's config vars, nothing from this venv."""
    dev_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != dev_bin)
    keep = {k: os.environ[k] for k in ("HOME", "LANG", "TMPDIR") if k in os.environ}
    return keep | {"PATH": f"{runtime / 'bin'}{os.pathsep}{path}", "PYTHONUNBUFFERED": "1"} | config_vars


def post_compile(build: Path, runtime: Path, cache: Path, **config_vars: str) -> subprocess.CompletedProcess:
    env = clean_env(runtime, CACHE_DIR=str(cache), **config_vars)
    return subprocess.run(["bin/post_compile"], cwd=build, env=env, capture_output=True, text=True, timeout=900)


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_symlink() and p.is_file())


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def heroku(tmp_path_factory: pytest.TempPathFactory, object_store: ObjectStore) -> dict:
    """One project, remote and runtime: a good build served by honcho, and the builds that must fail."""
    require_tool("git")
    honcho = require_tool("honcho", "pip install -r requirements-dev.txt")
    tmp = tmp_path_factory.mktemp("buildpack")
    started = time.monotonic()
    repo = dvc_project_copy(tmp / "repo")
    prefix = f"buildpack-{tmp.name}"
    remote, ci = object_store.url(prefix), object_store.env()  # CI's remote and credentials (a key file)
    sh(repo, "dvc", "remote", "add", "--local", "-d", "storage", remote)
    sh(repo, "dvc", "repro")
    sh(repo, "dvc", "push", env=ci)
    good = commit(repo, "CI: the gated bundle, pushed to the remote")
    model_joblib = (repo / "artifacts/model/model.joblib").read_bytes()
    # someone forces a REJECTED bundle into dvc.lock (the gate writes it, then exits 1; `dvc commit -f` records it)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["gate"]["thresholds"] = [{"metric": "roc_auc", "min": 0.9999}]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert sh(repo, sys.executable, "-m", "mlops_template", "gate", check=False).returncode == 1
    sh(repo, "dvc", "commit", "-f", "gate")
    sh(repo, "dvc", "push", env=ci)
    rejected = commit(repo, "a REJECTED bundle in dvc.lock")

    # the slug's Python: requirements.txt only (uv for speed, as the Makefile does), plus the setuptools the
    # buildpack installs into a Python 3.11 slug (its lib/pip.sh: SETUPTOOLS_VERSION)
    runtime = tmp / "runtime"
    sh(tmp, "python3.11", "-m", "venv", str(runtime))
    uv = [str(Path(sys.executable).parent / "uv"), "pip", "install", "--quiet", "--python", str(runtime / "bin/python")]
    sh(ROOT, *uv, "-r", "requirements.txt", "setuptools==70.3.0")
    cache = tmp / "cache"  # the buildpack's cache dir: the hook's DVC venv is made once, reused by every build
    setup = time.monotonic() - started

    # the app's config vars: the remote, the emulator's settings, the service account's key as JSON text
    emulator = {k: v for k, v in ci.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"} | {"DVC_REMOTE_URL": remote}
    config = emulator | {KEY_VARIABLE: object_store.credentials.read_text()}
    build = archive(repo, good, tmp / "build")
    hook_started = time.monotonic()
    built = post_compile(build, runtime, cache, **config)
    hook_seconds = time.monotonic() - hook_started
    failures = {
        "no remote": post_compile(archive(repo, good, tmp / "b-none"), runtime, cache),
        "no credentials": post_compile(archive(repo, good, tmp / "b-nokey"), runtime, cache, **emulator),
        "rejected": post_compile(archive(repo, rejected, tmp / "b-rej"), runtime, cache, **config),
    }  # fmt: skip
    corrupt(object_store, prefix, model_joblib)  # last: the builds above pulled intact objects (a cache per build)
    failures["tampered"] = post_compile(archive(repo, good, tmp / "b-bad"), runtime, cache, **config)
    result = {"build": build, "built": built, "failures": failures, "runtime": runtime, "cache": cache}
    if built.returncode != 0:
        return result
    port = free_port()
    env = clean_env(runtime, HOST="127.0.0.1")
    process = subprocess.Popen(
        [honcho, "start", "--no-colour", "--procfile", "Procfile", "--port", str(port), "web"],
        cwd=build, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        example = json.loads((build / "artifacts/model/metadata.json").read_text())["example"]
        result |= {
            "ready": httpx.get(f"{url}/ready", timeout=5),
            "model": httpx.get(f"{url}/model", timeout=5),
            "predict": httpx.post(f"{url}/predict", json=example, timeout=10),
            "smoke": sh(ROOT, sys.executable, "-m", "mlops_template", "smoke-test", "--url", url, "--wait", "5",
                        env={"EXPECT_MODEL_VERSION": json.loads((build / "artifacts/model/metadata.json")
                                                                .read_text())["model_version"]}, check=False),
        }  # fmt: skip
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        result["served"] = process.communicate(timeout=40)[0]
    print(f"\nbuildpack: setup {setup:.0f} s (repro, push, runtime venv); post_compile {hook_seconds:.0f} s; "
          f"slug {(du(build) + du(runtime)) / 2**20:.0f} MB (build dir + runtime venv)")  # fmt: skip
    return result


def test_post_compile_pulls_and_verifies_the_gated_bundle(heroku: dict) -> None:
    built, build = heroku["built"], heroku["build"]
    assert built.returncode == 0, built.stdout + built.stderr
    metadata = json.loads((build / "artifacts/model/metadata.json").read_text())
    assert metadata["gate"]["verdict"] == "VALIDATED"
    assert "is VALIDATED (checksums match)" in built.stderr
    assert built.stdout.strip().endswith("artifacts/model")
    # DVC stays out of the slug: no DVC in its Python, no DVC cache, index or build-time config in the build dir
    assert not (heroku["runtime"] / "bin" / "dvc").exists()
    assert sorted(p.name for p in (build / ".dvc").iterdir()) == [".gitignore", "config"]
    assert not (build / "build").exists() and not list((build / "src").glob("*.egg-info"))  # pip's leftovers
    assert list(heroku["cache"].glob("mlops-template-dvc/venv-*/bin/dvc"))  # the next build reuses it


def test_the_slug_stays_within_herokus_limit(heroku: dict) -> None:
    slug = du(heroku["build"]) + du(heroku["runtime"])
    bundle = du(heroku["build"] / "artifacts" / "model")
    assert bundle > 0
    assert slug < SLUG_LIMIT, f"slug {slug / 2**20:.0f} MB"


def test_the_procfile_web_line_serves_the_bundle(heroku: dict) -> None:
    assert heroku["ready"].status_code == 200, heroku["served"][-3000:]
    metadata = json.loads((heroku["build"] / "artifacts/model/metadata.json").read_text())
    assert heroku["model"].json()["model_version"] == metadata["model_version"]
    assert heroku["model"].json()["model_committed_at"] is None  # no git history in a slug: unknown, not guessed
    predicted = heroku["predict"]
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["model_version"] == metadata["model_version"]
    assert predicted.json()["predictions"][0]["prediction"] in metadata["classes"]
    smoke = heroku["smoke"]  # CD's own smoke test, as after a deploy: /ready, /model is this bundle, /predict
    assert smoke.returncode == 0, smoke.stderr


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("no remote", "no DVC remote to pull artifacts/model from: set the app's config var DVC_REMOTE_URL"),
        ("no credentials", f"no credentials for the DVC remote gs://{BUCKET}/buildpack-"),
        ("rejected", "artifacts/model: gate verdict is REJECTED, expected VALIDATED"),
        ("tampered", "artifacts/model/model.joblib: checksum mismatch"),
    ],
)
def test_a_bad_bundle_fails_the_build_with_one_line(heroku: dict, case: str, says: str) -> None:
    result = heroku["failures"][case]
    assert result.returncode != 0
    assert len(error_lines(result)) == 1, result.stderr
    assert says in error_lines(result)[0]
    assert "Traceback" not in result.stderr
