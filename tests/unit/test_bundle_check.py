"""`bundle-check`: the guard `make image` runs before building (only a VALIDATED, intact bundle passes)."""

from pathlib import Path

import pytest
from sklearn.dummy import DummyClassifier

from mlops_template.cli import main
from mlops_template.core.bundle import PENDING, REJECTED, VALIDATED, save_bundle
from tests.conftest import model_record


def make_bundle(directory: Path, verdict: str | None) -> Path:
    model = DummyClassifier().fit([[0], [1]], ["N", "Y"])
    return save_bundle(directory, model, model_record(gate={"verdict": verdict or PENDING}))


def test_validated_bundle_passes_and_prints_its_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bundle = make_bundle(tmp_path / "model", VALIDATED)
    assert main(["bundle-check", "--dir", str(bundle)]) == 0
    assert capsys.readouterr().out.strip() == str(bundle)


@pytest.mark.parametrize(("verdict", "message"), [(REJECTED, "gate verdict is REJECTED"), (None, "verdict is PENDING")])
def test_unjudged_or_rejected_bundle_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], verdict, message):
    bundle = make_bundle(tmp_path / "model", verdict)
    assert main(["bundle-check", "--dir", str(bundle)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_tampered_bundle_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bundle = make_bundle(tmp_path / "model", VALIDATED)
    with open(bundle / "model.joblib", "ab") as handle:
        handle.write(b"x")
    assert main(["bundle-check", "--dir", str(bundle)]) == 2
    assert "checksum mismatch" in capsys.readouterr().err


def test_default_is_the_gated_bundle_dir_from_params(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch):
    root = Path(__file__).resolve().parents[2]
    params = tmp_path / "params.yaml"
    params.write_text((root / "params.yaml").read_text().replace("bundle_dir: artifacts/model", "bundle_dir: judged"))
    monkeypatch.chdir(tmp_path)
    make_bundle(tmp_path / "judged", VALIDATED)
    assert main(["bundle-check"]) == 0
    assert capsys.readouterr().out.strip() == "judged"


def test_in_actions_the_release_identity_becomes_step_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """CD builds the image with git_commit and passes both to the smoke test, which checks the service runs them.

    The bundle records no commit nor time (reproducible bundles): git_commit is the commit checked out, the one
    built, and committed_at (MODEL_COMMITTED_AT) the time of the commit whose dvc.lock recorded the bundle.
    """
    import os
    import subprocess

    model = DummyClassifier().fit([[0], [1]], ["N", "Y"])
    bundle = save_bundle(tmp_path / "model", model, model_record(gate={"verdict": VALIDATED}))
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  gate:\n    outs:\n    - path: model\n      md5: a.dir\n"
    )
    dated = {**os.environ, "GIT_COMMITTER_DATE": "@1780000000 +0000"}
    for command in (
        ["init", "-q"],
        ["add", "dvc.lock"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c"],
    ):
        subprocess.run(["git", *command], cwd=tmp_path, check=True, env=dated)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    assert main(["bundle-check", "--dir", str(bundle)]) == 0
    version = (bundle / "metadata.json").read_text()
    lines = output.read_text().splitlines()
    assert lines[1] == f"git_commit={head}" and len(head) == 40
    assert lines[0].startswith("model_version=") and lines[0].split("=")[1] in version
    assert lines[2] == "committed_at=2026-05-28T20:26:40+00:00"
