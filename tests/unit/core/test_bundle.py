import json

import pytest
from sklearn.dummy import DummyClassifier

from mlops_template.core.bundle import (
    MODEL_FILE,
    PENDING,
    REJECTED,
    VALIDATED,
    load_bundle,
    read_metadata,
    save_bundle,
)
from mlops_template.core.errors import UserError
from mlops_template.core.fsutil import sha256_file


def make(tmp_path, verdict=VALIDATED):
    model = DummyClassifier().fit([[0], [1]], ["a", "b"])
    return save_bundle(tmp_path / "bundle", model, {"task": "binary", "gate": {"verdict": verdict}})


def test_roundtrip_records_checksums_and_versions(tmp_path):
    directory = make(tmp_path)
    bundle = load_bundle(directory)
    assert bundle.model.predict([[0]])[0] in {"a", "b"}
    assert bundle.metadata["files"][MODEL_FILE] == sha256_file(directory / MODEL_FILE)
    assert bundle.version == bundle.metadata["files"][MODEL_FILE][:12]
    assert bundle.metadata["versions"]["scikit-learn"]
    assert bundle.verdict == VALIDATED


def test_tampered_file_is_refused_before_unpickling(tmp_path, monkeypatch):
    directory = make(tmp_path)
    (directory / MODEL_FILE).write_bytes(b"not the model")
    monkeypatch.setattr("joblib.load", lambda *_: pytest.fail("unpickled an unverified file"))
    with pytest.raises(UserError, match="checksum mismatch"):
        load_bundle(directory)


def test_missing_file(tmp_path):
    directory = make(tmp_path)
    (directory / MODEL_FILE).unlink()
    with pytest.raises(UserError, match="missing file listed"):
        load_bundle(directory)


def test_rejected_and_pending_bundles_are_refused(tmp_path):
    with pytest.raises(UserError, match="gate rejected this model"):
        load_bundle(make(tmp_path, REJECTED))
    with pytest.raises(UserError, match=r"verdict is PENDING.*make gate"):
        load_bundle(make(tmp_path, PENDING))
    assert load_bundle(make(tmp_path, PENDING), allow=(PENDING,)).verdict == PENDING


def test_incompatible_library_version(tmp_path):
    directory = make(tmp_path)
    metadata = read_metadata(directory)
    metadata["versions"]["scikit-learn"] = "0.24.2"
    (directory / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(UserError, match=r"trained with scikit-learn 0\.24\.2"):
        load_bundle(directory)


def test_not_a_bundle(tmp_path):
    with pytest.raises(UserError, match="not a model bundle"):
        load_bundle(tmp_path)
    (tmp_path / "metadata.json").write_text("{broken")
    with pytest.raises(UserError, match="not valid JSON"):
        load_bundle(tmp_path)
