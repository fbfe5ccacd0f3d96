import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError
from sklearn.dummy import DummyClassifier

from mlops_template.core.bundle import (
    FORMAT_VERSION,
    METADATA,
    MODEL_FILE,
    PENDING,
    REJECTED,
    VALIDATED,
    BundleMetadata,
    load_bundle,
    read_metadata,
    save_bundle,
)
from mlops_template.core.errors import UserError
from mlops_template.core.fsutil import sha256_file
from tests.conftest import model_record


def make(tmp_path: Path, verdict: str = VALIDATED) -> Path:
    model = DummyClassifier().fit([[0], [1]], ["N", "Y"])
    return save_bundle(tmp_path / "bundle", model, model_record(gate={"verdict": verdict}))


def edit(directory: Path, change: Callable[[dict], object]) -> None:
    """Change metadata.json as parsed JSON (what a hand edit, an old writer or a newer one would leave)."""
    raw = json.loads((directory / METADATA).read_text())
    change(raw)
    (directory / METADATA).write_text(json.dumps(raw))


def test_roundtrip_records_checksums_and_versions(tmp_path):
    directory = make(tmp_path)
    bundle = load_bundle(directory)
    assert bundle.model.predict([[0]])[0] in {"N", "Y"}
    assert isinstance(bundle.metadata, BundleMetadata)
    assert bundle.metadata.files[MODEL_FILE] == sha256_file(directory / MODEL_FILE)
    assert bundle.version == bundle.metadata.model_version == bundle.metadata.files[MODEL_FILE][:12]
    assert bundle.metadata.versions["scikit-learn"]
    assert bundle.metadata.versions["python"] == "{}.{}".format(*sys.version_info[:2])  # no patch: reproducible
    assert bundle.metadata.format_version == FORMAT_VERSION
    assert bundle.verdict == VALIDATED
    # what is written is exactly the typed record (plus what save_bundle adds), and reads back equal
    raw = json.loads((directory / METADATA).read_text())
    assert raw == bundle.metadata.model_dump(mode="json")
    assert raw["params"]["schema"] == {"target": "label", "task": "binary", "positive_class": None, "drop": [],
                                       "numeric": None, "categorical": None}  # fmt: skip
    assert raw["onnx"] == {"used": False, "reason": "not exported in this test"}  # only the figures recorded
    assert model_record(**{k: raw[k] for k in model_record().model_dump()}) == model_record(gate=raw["gate"])


def test_feature_lists_come_from_the_metadata_in_order():
    record = model_record(
        features=[
            {"name": "b", "type": "categorical", "missing_rate": 0.1, "categories": ["x"]},
            {"name": "a", "type": "numeric", "missing_rate": 0.0, "min": 0, "max": 1, "median": 0.5, "integer": False},
            {"name": "c", "type": "numeric", "missing_rate": 0.0, "min": 0, "max": 1, "median": 0.5, "integer": True},
        ],
        example={"b": "x", "a": 0.5, "c": 1},
    )
    assert record.feature_names == ["b", "a", "c"]
    assert record.numeric == ["a", "c"]
    assert record.categorical == ["b"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"example": {"income": 1.0}}, "example: keys"),
        ({"classes": None}, "do not fit task binary"),
        ({"positive_class": "maybe"}, "positive_class 'maybe'"),
        ({"features": []}, "features"),
        ({"features": [model_record().features[1]] * 2, "example": {"area": "Urban"}}, "names repeat"),
    ],
)
def test_writers_cannot_build_an_inconsistent_record(changes: dict, message: str):
    """The models refuse at write time what serving could not use (train/gate build metadata through them)."""
    with pytest.raises(ValidationError, match=message):
        model_record(**changes)


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
    edit(directory, lambda raw: raw["versions"].update({"scikit-learn": "0.24.2"}))
    with pytest.raises(UserError, match=r"trained with scikit-learn 0\.24\.2"):
        load_bundle(directory)


def test_not_a_bundle(tmp_path):
    with pytest.raises(UserError, match="not a model bundle"):
        load_bundle(tmp_path)


def _delete(key: str) -> Callable[[dict], object]:
    return lambda raw: raw.pop(key)


def _set(path: str, value: object) -> Callable[[dict], None]:
    def change(raw: dict) -> None:
        *parents, last = path.split(".")
        for part in parents:
            raw = raw[int(part)] if isinstance(raw, list) else raw[part]
        raw[last] = value

    return change


# One line per way metadata.json can be unusable: the file, the field, and the fix, never a KeyError.
MALFORMED = {
    "missing field": (_delete("task"), r"field `task` is missing"),
    "missing nested field": (_set("training_data", {"source": "x", "rows": {}}), r"`training_data\.sha256` is missing"),
    "wrong type": (_set("features.0.min", "low"), r"field `features\.0\.min`: Input should be a valid number.*'low'"),
    "wrong feature type": (_set("features.1.type", "text"), r"field `features\.1`: .*'numeric', 'categorical'"),
    "unknown key": (_set("features.1.colour", "red"), r"unknown field `features\.1\.colour`"),
    "unknown top-level key": (_set("owner", "me"), r"unknown field `owner`"),
    "bad verdict": (_set("gate.verdict", "OK"), r"field `gate\.verdict`: Input should be 'PENDING'"),
    "no model file listed": (_set("files", {}), r"files: lists no model\.joblib"),
    "example off the features": (_set("example", {}), r"example: keys \[\] are not the features"),
    "older format_version": (
        _set("format_version", FORMAT_VERSION - 1),
        rf"format_version {FORMAT_VERSION - 1} is older than {FORMAT_VERSION}",
    ),
    "newer format_version": (
        _set("format_version", FORMAT_VERSION + 1),
        rf"format_version {FORMAT_VERSION + 1} is newer .* upgrade mlops_template",
    ),
    "no format_version": (_delete("format_version"), r"field `format_version` is missing or not an integer"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_metadata_is_one_user_error_naming_file_field_and_fix(tmp_path, case):
    directory = make(tmp_path)
    change, message = MALFORMED[case]
    edit(directory, change)
    for read in (read_metadata, load_bundle):
        with pytest.raises(UserError, match=message) as caught:
            read(directory)
        line = str(caught.value)
        assert line.startswith(f"{directory / METADATA}: ")
        assert "\n" not in line
        assert line.endswith("`make pipeline`") or "make pipeline" in line


@pytest.mark.parametrize(("text", "message"), [("{broken", "not valid JSON"), ("[1, 2]", "expected a JSON object")])
def test_invalid_json_is_one_user_error(tmp_path, text: str, message: str):
    directory = make(tmp_path)
    (directory / METADATA).write_text(text)
    with pytest.raises(UserError, match=rf"{METADATA}: {message}.*rebuild the bundle with `make pipeline`"):
        load_bundle(directory)


def test_several_problems_are_counted_not_listed(tmp_path):
    directory = make(tmp_path)
    edit(directory, lambda raw: [raw.pop("task"), raw.pop("target")])
    with pytest.raises(UserError, match=r"field `task` is missing \(and 1 more problem\)"):
        read_metadata(directory)
