"""A DVC remote on a real object store (the GCS emulator on loopback, tests/object_store.py): `make push` from one
clone and `make data` in a fresh clone give byte-identical data; CD's `make bundle-pull` gets the very bundle the
pushing clone judged, without training; wrong credentials and an unreachable remote are one clear line, exit 2; a
run without credentials uses the embedded sample and says so. The remote comes from DVC_REMOTE_URL, as CI's
repository variable gives it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import dvc_project_copy, free_port, sh
from tests.object_store import ObjectStore

MAKE = ["make", "-o", ".venv/.installed"]  # the test's own environment runs the commands (see test_fork_data)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory, object_store: ObjectStore) -> tuple[Path, dict[str, str]]:
    """A clone whose data (not the embedded sample: another seed) and pipeline outputs (`dvc repro`, as CI on main
    runs it) were pushed with `make push` to a fresh prefix, dvc.lock committed."""
    origin = dvc_project_copy(tmp_path_factory.mktemp("remote-origin"))
    sh(origin, sys.executable, "-m", "mlops_template", "sample", "--seed", "99")
    sh(origin, "dvc", "add", "-q", "data")
    sh(origin, "dvc", "repro", "-q")
    sh(origin, "git", "add", "-A")
    sh(origin, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "our data")
    env = {**object_store.env(), "DVC_REMOTE_URL": object_store.url("data-test")}
    push = sh(origin, *MAKE, "push", env=env)
    assert "dvc push (gs://mlops-template-dvc/data-test)" in push.stderr, push.stderr
    return origin, env


def fresh_clone(origin: Path, target: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(origin), str(target)], check=True)
    return target


def test_make_data_in_a_fresh_clone_pulls_byte_identical_data(pushed, object_store: ObjectStore, tmp_path: Path):
    origin, env = pushed
    stored = object_store.objects("data-test/")
    assert any(name.startswith("data-test/files/md5/") for name in stored)
    assert any(name.startswith("data-test/runs/") for name in stored)  # `make push` sends the run-cache too
    clone = fresh_clone(origin, tmp_path / "clone")
    pulled = sh(clone, *MAKE, "data", "PULL=1", env=env)  # as CI with the remote: also the pushed outputs
    csv = Path("data/loans.csv")
    assert (clone / csv).read_bytes() == (origin / csv).read_bytes()
    assert "error" not in pulled.stderr.lower()
    assert "up to date" in sh(clone, "dvc", "status", "data.dvc").stdout  # exactly what data.dvc records
    # the URL went to the clone's own config, not to the committed .dvc/config
    assert "data-test" in (clone / ".dvc" / "config.local").read_text()
    assert not sh(clone, "git", "status", "--porcelain").stdout.strip()
    # issue 11.2: PULL=1 fetched the outputs and run-cache the origin pushed for this dvc.lock: `dvc repro` checks
    # them out instead of training, and CI's check finds the lock it reproduced to be the committed one. (The gate
    # stage runs again: DVC never restores a stage with a `cache: false` output, reports/gate.md, from the
    # run-cache; it copies the fetched candidate and writes its verdict, the same bytes.)
    rerun = sh(clone, "dvc", "repro", env=env)
    for stage in ("prep", "train"):
        assert f"Stage '{stage}' is cached - skipping run" in rerun.stdout, rerun.stdout
    assert "Running stage 'prep'" not in rerun.stdout and "Running stage 'train'" not in rerun.stdout
    bundle = Path("artifacts/model/metadata.json")
    assert (clone / bundle).read_bytes() == (origin / bundle).read_bytes()
    assert "what this run produced" in sh(clone, *MAKE, "lock-check", env=env).stdout
    # gcsfs authenticated like against Google: google-auth exchanged a signed JWT of the service-account key
    assert any(
        r["kid"] == "test-key-good" and r["claims"]["iss"].startswith("dvc@") for r in object_store.token_requests
    )


def test_cd_bundle_pull_gets_the_judged_bundle_without_training(pushed, tmp_path: Path):
    origin, env = pushed
    clone = fresh_clone(origin, tmp_path / "clone")
    sh(clone, *MAKE, "bundle-pull", env=env)
    bundle = Path("artifacts/model")
    files = sorted(p.relative_to(origin / bundle) for p in (origin / bundle).rglob("*") if p.is_file())
    assert files and [(clone / bundle / f).read_bytes() for f in files] == [
        (origin / bundle / f).read_bytes() for f in files
    ]
    assert not (clone / "artifacts" / "prepared").exists() and not (clone / "data").exists()  # nothing re-ran
    assert "VALIDATED" in sh(clone, sys.executable, "-m", "mlops_template", "bundle-check").stderr


def test_a_run_without_credentials_uses_the_embedded_sample_and_says_so(pushed, tmp_path: Path):
    origin, env = pushed
    clone = fresh_clone(origin, tmp_path / "clone")
    files = {"GITHUB_OUTPUT": tmp_path / "output", "GITHUB_STEP_SUMMARY": tmp_path / "summary.md"}
    github = {key: str(path) for key, path in files.items()}
    told = sh(clone, *MAKE, "data-access", "DATA_SECRETS=absent", env={**env, **github})
    assert "::notice title=Pipeline run on the embedded sample::data/loans.csv is the embedded sample" in told.stdout
    assert files["GITHUB_OUTPUT"].read_text() == "available=true\nremote=false\nsample=true\n"
    assert "the DVC remote 'storage' (gs://mlops-template-dvc/data-test) needs credentials" in (
        files["GITHUB_STEP_SUMMARY"].read_text()
    )
    sh(clone, *MAKE, "data", "SAMPLE=1", env={**env, "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9"})  # no pull tried
    assert (clone / "data" / "loans.csv").is_file()
    sh(clone, *MAKE, "data-access", env={**env, **github})
    assert files["GITHUB_OUTPUT"].read_text().endswith("available=true\nremote=true\nsample=false\n")


def one_error(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 2, out + err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def test_wrong_credentials_and_unreachable_remote_are_one_clear_line(pushed, object_store: ObjectStore, tmp_path: Path):
    """Both at once. Neither waits for gcsfs's retries (six tries per request with back-off, minutes per `dvc pull`,
    for errors no retry fixes): the remote is probed first (pipeline/remote_probe.py)."""
    origin, env = pushed
    tried = sum(r["kid"] == "test-key-revoked" for r in object_store.token_requests)
    revoked = {**env, **object_store.env(object_store.revoked)}
    closed = {**env, "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}"}
    clones = {name: fresh_clone(origin, tmp_path / name) for name in ("revoked", "closed")}
    path = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    runs = {
        name: subprocess.Popen(
            [*MAKE, "data"],
            cwd=clones[name],
            env={**os.environ, **path, **case},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name, case in (("revoked", revoked), ("closed", closed))
    }
    error = one_error(runs["revoked"])
    assert error.startswith("error: `dvc pull`: the DVC remote 'storage' (gs://mlops-template-dvc/data-test) refused")
    assert "invalid_grant" in error and "README 'Set up CI/CD in your fork'" in error
    assert any(r["kid"] == "test-key-revoked" for r in object_store.token_requests)  # the refused key was tried
    # once: a refusal for good (invalid_grant) is not retried (gcsfs alone sent it again and again for minutes)
    assert sum(r["kid"] == "test-key-revoked" for r in object_store.token_requests) == tried + 1

    error = one_error(runs["closed"])
    assert error.startswith("error: `dvc pull`: cannot reach the DVC remote 'storage' (gs://mlops-template-dvc/")
    assert "Cannot connect to host 127.0.0.1" in error and "DVC_REMOTE_URL or .dvc/config" in error
    for clone in clones.values():
        assert not (clone / "data").exists()


def test_fetching_outputs_the_remote_lacks_is_a_warning_and_the_pipeline_makes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """`make data PULL=1` on a lock whose outputs nobody pushed (a remote configured today, a pull request whose
    author did not push): one warning, no failure, so `dvc repro` then trains them."""
    from mlops_template.pipeline.remote import Remote, fetch_outputs

    monkeypatch.chdir(tmp_path)
    sh(tmp_path, "dvc", "init", "-q", "--no-scm")
    (tmp_path / "out.txt").write_text("made by a stage nobody pushed\n")
    sh(tmp_path, "dvc", "add", "-q", "out.txt")
    shutil.rmtree(tmp_path / ".dvc" / "cache")
    (tmp_path / "empty-remote").mkdir()
    sh(tmp_path, "dvc", "remote", "add", "-q", "-d", "storage", str(tmp_path / "empty-remote"))
    with caplog.at_level(logging.WARNING):
        fetch_outputs(Remote("storage", str(tmp_path / "empty-remote")))
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, warned
    assert "are not on the DVC remote 'storage'" in warned[0]
    assert "nobody pushed them: the pipeline makes them" in warned[0]


def test_the_default_remote_is_found_whatever_the_length_of_its_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`dvc remote list` wraps its table at 80 columns without a terminal: a long URL (a pytest-xdist worker's
    temporary folder was enough) and its "(default)" came on lines of their own, and `make data` said the clone had
    no DVC remote."""
    from mlops_template.pipeline.remote import Remote, default_remote

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_REMOTE_URL", raising=False)
    long = str(tmp_path / ("a-folder-name-long-enough-to-wrap-dvc-remote-list-" * 2) / "storage")
    sh(tmp_path, "dvc", "init", "-q", "--no-scm")
    assert default_remote() is None
    sh(tmp_path, "dvc", "remote", "add", "-q", "first", str(tmp_path / "first"))
    assert default_remote() == Remote("first", str(tmp_path / "first"))  # no default: the first listed
    sh(tmp_path, "dvc", "remote", "add", "-q", "--local", "-d", "backup", long)
    assert default_remote() == Remote("backup", long)
