"""CI's check that dvc.lock (and the outputs git tracks) are what this run's `dvc repro` produced."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from mlops_template.ci.lock_check import FIX, check
from mlops_template.core.errors import UserError

LOCK = {
    "schema": "2.0",
    "stages": {
        "train": {
            "cmd": "python -m mlops_template train",
            "outs": [{"path": "artifacts/model", "md5": "aaa.dir"}],
        },
        "evaluate": {
            "cmd": "python -m mlops_template evaluate",
            "deps": [{"path": "artifacts/model", "md5": "aaa.dir"}],
            "outs": [{"path": "reports/metrics.json", "md5": "m1"}],
        },
    },
}


def git(cwd: Path, *args: str) -> None:
    identity = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed dvc.lock, a tracked output (metrics) and an ignored one (the bundle), as after `dvc repro`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(LOCK, sort_keys=False))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "metrics.json").write_text('{"roc_auc": 0.9}\n')
    (tmp_path / ".gitignore").write_text("/artifacts/\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "pipeline")
    (tmp_path / "artifacts" / "model").mkdir(parents=True)  # DVC's, git-ignored: never a difference
    (tmp_path / "unrelated.txt").write_text("not an output\n")
    return tmp_path


def test_the_committed_lock_passes(project: Path) -> None:
    assert "what this run produced" in check()


def test_a_lock_this_run_changed_fails_with_the_stages_the_files_and_the_fix(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    changed = yaml.safe_load((project / "dvc.lock").read_text())
    changed["stages"]["train"]["outs"][0]["md5"] = "bbb.dir"
    changed["stages"]["evaluate"]["deps"][0]["md5"] = "bbb.dir"
    (project / "dvc.lock").write_text(yaml.safe_dump(changed, sort_keys=False))
    (project / "reports" / "metrics.json").write_text('{"roc_auc": 0.8}\n')
    summary = project / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    with pytest.raises(UserError) as raised:
        check(remote=True)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith("dvc.lock is not what this run produced (stages train, evaluate changed;")
    assert "differs: dvc.lock, reports/metrics.json)" in text and FIX in text and "make push" in text
    assert "unrelated.txt" not in text  # only the lock and the outputs it records
    assert "## dvc.lock is not what this run produced" in summary.read_text()
    assert capsys.readouterr().out.startswith("::error title=dvc.lock is not what this run produced::")


def test_an_output_git_tracks_that_differs_fails_even_with_the_same_lock(project: Path, capsys) -> None:
    """The committed metrics are the next pull request's baseline: they must be the ones dvc.lock records."""
    (project / "reports" / "metrics.json").write_text('{"roc_auc": 0.5}\n')
    with pytest.raises(UserError, match=r"\(differs: reports/metrics.json\)"):
        check()
    assert "::error" not in capsys.readouterr().out  # outside Actions: no workflow command


def test_a_lock_git_does_not_track_fails(project: Path) -> None:
    git(project, "rm", "-q", "--cached", "dvc.lock")
    git(project, "commit", "-qm", "no lock")
    with pytest.raises(UserError, match=r"stages train, evaluate changed; differs: dvc.lock\)"):
        check()


def other_bytes(project: Path) -> None:
    """What another machine's run gives: the same inputs, other model bytes and metrics."""
    changed = yaml.safe_load((project / "dvc.lock").read_text())
    changed["stages"]["train"]["outs"][0]["md5"] = "bbb.dir"
    changed["stages"]["evaluate"]["deps"][0]["md5"] = "bbb.dir"  # produced by train: an output too
    changed["stages"]["evaluate"]["outs"][0]["md5"] = "m2"
    (project / "dvc.lock").write_text(yaml.safe_dump(changed, sort_keys=False))
    (project / "reports" / "metrics.json").write_text('{"roc_auc": 0.8999}\n')


def test_other_bytes_from_the_same_inputs_without_a_remote_is_a_warning(project: Path, monkeypatch, capsys) -> None:
    """No remote: CD retrains anyway and nobody can push outputs for CI to fetch, so red would be unfixable."""
    other_bytes(project)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert check(remote=False).startswith("warning (no DVC remote, same inputs, other bytes)")
    assert capsys.readouterr().out.startswith("::warning title=dvc.lock is not what this run produced::")
    with pytest.raises(UserError, match="make push"):  # with a remote CD would pull outputs nobody pushed
        check(remote=True)


def test_a_lock_left_behind_by_a_params_change_fails_even_without_a_remote(project: Path) -> None:
    other_bytes(project)
    changed = yaml.safe_load((project / "dvc.lock").read_text())
    changed["stages"]["train"]["params"] = {"params.yaml": {"train.seed": 7}}
    (project / "dvc.lock").write_text(yaml.safe_dump(changed, sort_keys=False))
    with pytest.raises(UserError, match="stages train, evaluate changed"):
        check(remote=False)
