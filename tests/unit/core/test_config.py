from pathlib import Path

import pytest

from mlops_template.core.config import load_params
from mlops_template.core.errors import UserError
from tests.conftest import ROOT, write_params


def test_project_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.schema_.target == "loan_status"
    assert params.train.hyperparameters() == dict(getattr(params.train, params.train.estimator))
    assert params.gate.tolerance_for("roc_auc") == params.gate.tolerance["default"]


def test_missing_file_names_it(tmp_path: Path):
    with pytest.raises(UserError, match=r"nowhere\.yaml: file not found"):
        load_params(tmp_path / "nowhere.yaml")


def test_invalid_yaml(tmp_path: Path):
    path = tmp_path / "params.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_params(path)


def test_unknown_key_is_named_with_the_fix(tmp_path: Path):
    write_params(tmp_path, prep={"tset_size": 0.3})
    with pytest.raises(UserError) as error:
        load_params(tmp_path / "params.yaml")
    assert "prep.tset_size: unknown key" in str(error.value)
    assert "params.yaml" in str(error.value)


def test_wrong_type_is_named_with_the_value(tmp_path: Path):
    write_params(tmp_path, prep={"test_size": "a fifth"})
    with pytest.raises(UserError, match=r"prep\.test_size: .*'a fifth'"):
        load_params(tmp_path / "params.yaml")


def test_threshold_needs_one_bound(tmp_path: Path):
    write_params(tmp_path, gate={"thresholds": [{"metric": "f1"}]})
    with pytest.raises(UserError, match="exactly one of min or max"):
        load_params(tmp_path / "params.yaml")


def test_feature_cannot_be_target(tmp_path: Path):
    write_params(tmp_path, schema={"numeric": ["loan_status"]})
    with pytest.raises(UserError, match="target or dropped"):
        load_params(tmp_path / "params.yaml")


def test_positive_class_only_for_binary(tmp_path: Path):
    write_params(tmp_path, schema={"task": "multiclass"})
    with pytest.raises(UserError, match="positive_class only applies"):
        load_params(tmp_path / "params.yaml")


def test_a_key_with_control_characters_is_quoted_on_its_line(tmp_path: Path):
    write_params(tmp_path, data={"\x1e": None})  # str.splitlines() breaks lines at U+001E: found by the CLI fuzz test
    with pytest.raises(UserError) as error:
        load_params(tmp_path / "params.yaml")
    assert (
        str(error.value).splitlines()[1]
        == "  - data.'\\x1e': unknown key; check its spelling against README 'params.yaml reference'"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"url": "data/new.csv", "query": "SELECT 1"}, "data.source: set exactly one of url"),
        ({"format": "csv"}, "data.source: set exactly one of url"),
        ({"query": "SELECT 1", "database_url_env": "postgresql://u:p@h/db"}, "data.source.database_url_env: String"),
        ({"url": "x.csv", "format": "xlsx"}, "data.source.format: Input should be 'auto', 'csv' or 'parquet'"),
    ],
)
def test_data_source_is_one_file_or_one_query_and_names_an_env_var(tmp_path: Path, source: dict, message: str):
    write_params(tmp_path, data={"source": source})
    with pytest.raises(UserError) as error:
        load_params(tmp_path / "params.yaml")
    assert message in str(error.value)
