"""The embedded sample is written only where it belongs; a fork's missing data is one clear error."""

from pathlib import Path

import pandas as pd
import pytest

from mlops_template.cli import main
from mlops_template.core.config import load_params
from mlops_template.core.errors import UserError
from mlops_template.pipeline.rawdata import SAMPLE_PATH, access, ensure, sample_belongs, tracking
from tests.conftest import write_params

FORK_SCHEMA = {"target": "diagnosis", "task": "binary", "positive_class": "malignant", "drop": []}
DATA_DVC = "outs:\n- md5: 60c6ffab7f1212fd8b0466f6cb829a6e.dir\n  size: 1\n  nfiles: 1\n  hash: md5\n  path: data\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fork_params(directory: Path, path: str = "data/diagnosis.csv", **schema) -> Path:
    return write_params(directory, data={"path": path}, schema={**FORK_SCHEMA, **schema})


def test_the_sample_belongs_only_to_its_own_path_and_schema(project: Path):
    write_params(project)
    assert sample_belongs(load_params())
    write_params(project, data={"path": "./data//loans.csv"})
    assert sample_belongs(load_params())  # the same file, spelled differently
    # the sample's columns under another task are still the sample (a regression experiment on it)
    write_params(project, schema={"target": "loan_amount", "task": "regression", "positive_class": None})
    assert sample_belongs(load_params())
    write_params(project, data={"path": "data/ours.csv"})
    assert not sample_belongs(load_params())
    fork_params(project, path=str(SAMPLE_PATH))  # the loan file name, someone else's columns
    assert not sample_belongs(load_params())
    write_params(project, schema={"numeric": ["applicant_income", "blood_pressure"]})
    assert not sample_belongs(load_params())


def test_tracking_finds_the_dvc_file_of_the_folder_or_the_file(project: Path):
    assert tracking(Path("data/diagnosis.csv")) is None
    (project / "data.dvc").write_text(DATA_DVC)
    found = tracking(Path("data/diagnosis.csv"))
    md5 = "60c6ffab7f1212fd8b0466f6cb829a6e.dir"
    assert (found.dvc_file, found.out, found.md5) == (Path("data.dvc"), Path("data"), md5)
    (project / "data.dvc").unlink()
    (project / "data").mkdir()
    (project / "data" / "diagnosis.csv.dvc").write_text("outs:\n- md5: abc\n  path: diagnosis.csv\n")
    assert tracking(Path("data/diagnosis.csv")).md5 == "abc"
    assert tracking(Path("data/other.csv")) is None  # that .dvc file records another file


def test_make_data_writes_the_sample_for_the_template(project: Path, capsys):
    write_params(project, data={"sample": {"rows": 50, "seed": 3, "drift": 0.0}})
    assert main(["data"]) == 0
    assert len(pd.read_csv(project / SAMPLE_PATH)) == 50
    before = (project / SAMPLE_PATH).read_bytes()
    assert main(["data"]) == 0  # present: kept as it is
    assert (project / SAMPLE_PATH).read_bytes() == before


def test_a_fork_without_its_file_gets_one_error_and_no_file(project: Path, capsys):
    fork_params(project)
    assert main(["data"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data/diagnosis.csv: not found, and no .dvc file tracks it;")
    assert "git add data/diagnosis.csv" in err and "README 'Adapt it to your data'" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (project / "data").exists()


def test_sample_on_request_warns_and_never_overwrites(project: Path, caplog):
    fork_params(project, path="data/diagnosis.csv")
    params = load_params()
    ensure(params, sample=True)
    written = project / "data" / "diagnosis.csv"
    assert "loan_status" in pd.read_csv(written, nrows=1).columns
    assert "not your data" in caplog.text and "diagnosis" in caplog.text
    written.write_text("diagnosis,x\nbenign,1\n")
    ensure(params, sample=True)
    assert written.read_text() == "diagnosis,x\nbenign,1\n"


def test_access_without_dvc_involved(project: Path):
    write_params(project)
    assert access(load_params(), secrets=False).available  # the sample: every run can make it
    fork_params(project)
    with pytest.raises(UserError, match=r"no \.dvc file tracks it"):
        access(load_params())  # a broken configuration is red, not neutral
    (project / "data").mkdir()
    (project / "data" / "diagnosis.csv").write_text("diagnosis,x\nbenign,1\n")
    found = access(load_params(), secrets=False)
    assert found.available and "in the checkout" in found.how
