"""core/provenance: the commit time that dates a bundle, from a real git history of dvc.lock (no clock in bundles)."""

from __future__ import annotations

from pathlib import Path

from mlops_template.core.provenance import committed_at, recorded_hash, utc_text
from tests.conftest import sh

T1, T2, T3, T4 = 1_780_000_000, 1_780_086_400, 1_780_172_800, 1_780_259_200  # committer times, one day apart


def lock_text(bundle_md5: str, metrics_md5: str = "m0") -> str:
    """A dvc.lock shaped like the project's: the gate stage's outputs, the bundle among them."""
    return (
        "schema: '2.0'\nstages:\n  evaluate:\n    cmd: python -m mlops_template evaluate\n    outs:\n"
        f"    - path: reports/metrics.json\n      hash: md5\n      md5: {metrics_md5}\n"
        "  gate:\n    cmd: python -m mlops_template gate\n    deps:\n    - path: artifacts/train\n      md5: x.dir\n"
        f"    outs:\n    - path: artifacts/model\n      hash: md5\n      md5: {bundle_md5}\n      nfiles: 4\n"
    )


def commit(repo: Path, text: str, epoch: int, message: str = "lock") -> None:
    (repo / "dvc.lock").write_text(text)
    sh(repo, "git", "add", "dvc.lock")
    date = f"@{epoch} +0200"  # another offset: the answer is in UTC all the same
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message,
       env={"GIT_COMMITTER_DATE": date, "GIT_AUTHOR_DATE": date})  # fmt: skip


def history(repo: Path) -> Path:
    """A bundle retrained once (A, then B), then a lock change that keeps B (evaluate's output only)."""
    repo.mkdir(parents=True, exist_ok=True)
    sh(repo, "git", "init", "-q", "-b", "main")
    (repo / "artifacts" / "model").mkdir(parents=True)
    commit(repo, lock_text("aaa.dir"), T1)
    commit(repo, lock_text("bbb.dir"), T2)
    commit(repo, lock_text("bbb.dir", metrics_md5="m1"), T3)
    return repo


def test_the_first_commit_since_which_the_lock_records_the_bundle(tmp_path: Path):
    repo = history(tmp_path / "repo")
    assert committed_at(repo / "artifacts" / "model", repo / "dvc.lock") == utc_text(T2) == "2026-05-29T20:26:40+00:00"
    commit(repo, lock_text("aaa.dir", metrics_md5="m2"), T4)  # back to an earlier bundle: dated by its return
    assert committed_at(repo / "artifacts" / "model", repo / "dvc.lock") == utc_text(T4)


def test_unknown_rather_than_wrong(tmp_path: Path):
    repo = history(tmp_path / "repo")
    bundle, lock = repo / "artifacts" / "model", repo / "dvc.lock"
    assert committed_at(tmp_path / "elsewhere", lock) is None  # a bundle outside the project: the lock says nothing
    assert committed_at(repo / "artifacts" / "other", lock) is None  # a path the lock does not record
    lock.write_text(lock_text("ccc.dir", metrics_md5="m1"))  # retrained, not committed yet
    assert committed_at(bundle, lock) is None
    lock.write_text(lock_text("bbb.dir", metrics_md5="m9"))  # another stage changed: the bundle is still B's
    assert committed_at(bundle, lock) == utc_text(T2)
    assert committed_at(bundle, tmp_path / "no.lock") is None
    plain = tmp_path / "plain"  # a copy without git (an image, a Heroku build)
    (plain / "artifacts" / "model").mkdir(parents=True)
    (plain / "dvc.lock").write_text(lock_text("bbb.dir"))
    assert committed_at(plain / "artifacts" / "model", plain / "dvc.lock") is None


def test_a_shallow_history_that_ends_while_the_bundle_is_recorded_is_unknown(tmp_path: Path):
    repo = history(tmp_path / "repo")
    shallow, deeper = tmp_path / "shallow", tmp_path / "deeper"
    sh(tmp_path, "git", "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow))
    assert committed_at(shallow / "artifacts" / "model", shallow / "dvc.lock") is None  # T3 would be wrong
    sh(tmp_path, "git", "clone", "-q", "--depth", "3", f"file://{repo}", str(deeper))  # reaches A -> B: known
    assert committed_at(deeper / "artifacts" / "model", deeper / "dvc.lock") == utc_text(T2)


def test_recorded_hash_reads_only_outputs():
    text = lock_text("bbb.dir")
    assert recorded_hash(text, "artifacts/model") == "bbb.dir"
    assert recorded_hash(text, "artifacts/train") is None  # a dependency, not an output
    assert recorded_hash("{not: [yaml", "artifacts/model") is None
    assert recorded_hash(None, "artifacts/model") is None
