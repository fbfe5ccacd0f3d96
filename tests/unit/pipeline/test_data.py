from pathlib import Path

import pandas as pd
import pytest

from mlops_template.core.config import SchemaConfig
from mlops_template.core.errors import UserError
from mlops_template.pipeline.data import load_dataset, read_csv, split

BINARY = SchemaConfig(target="y", task="binary")


def csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "in.csv"
    path.write_text(text)
    return path


def test_missing_file_says_how_to_get_data(tmp_path):
    with pytest.raises(UserError, match=r"nope\.csv: file not found; run `make data`"):
        read_csv(tmp_path / "nope.csv")


def test_empty_file(tmp_path):
    with pytest.raises(UserError, match="the file is empty"):
        read_csv(csv(tmp_path, ""))


def test_header_only(tmp_path):
    with pytest.raises(UserError, match="header but no data rows"):
        read_csv(csv(tmp_path, "a,b,y\n"))


def test_missing_target_lists_columns(tmp_path):
    with pytest.raises(UserError) as error:
        load_dataset(csv(tmp_path, "a,b\n1,2\n3,4\n"), BINARY)
    assert "['y']" in str(error.value) and "['a', 'b']" in str(error.value)


def test_single_class(tmp_path):
    with pytest.raises(UserError, match="single class"):
        load_dataset(csv(tmp_path, "a,y\n1,Y\n2,Y\n3,Y\n"), BINARY)


def test_text_in_inferred_numeric_column_names_lines(tmp_path):
    rows = "".join(f"{i},{'Y' if i % 2 else 'N'}\n" for i in range(40))
    path = csv(tmp_path, "a,y\n" + rows + "oops,Y\n")
    with pytest.raises(UserError) as error:
        load_dataset(path, BINARY)
    message = str(error.value)
    assert "column 'a'" in message and "line(s) 42" in message and "'oops'" in message
    assert "schema.categorical" in message


def test_text_in_declared_numeric_column(tmp_path):
    path = csv(tmp_path, "a,b,y\nx,1,Y\n2,2,N\nz,3,Y\n4,4,N\n")
    config = SchemaConfig(target="y", task="binary", numeric=["a"])
    with pytest.raises(UserError, match=r"column 'a' is numeric but has text at line\(s\) 2, 4"):
        load_dataset(path, config)


def test_identifier_column_must_be_dropped(tmp_path):
    rows = "".join(f"id{i},{i % 3},{'Y' if i % 2 else 'N'}\n" for i in range(120))
    with pytest.raises(UserError, match=r"looks like an identifier.*schema\.drop"):
        load_dataset(csv(tmp_path, "key,a,y\n" + rows), BINARY)


def test_inference_and_positive_class_last(tmp_path):
    rows = "".join(f"{i},{'red' if i % 3 else 'blue'},{'yes' if i % 2 else 'no'}\n" for i in range(30))
    config = SchemaConfig(target="y", task="binary", positive_class="no")
    frame, schema = load_dataset(csv(tmp_path, "num,colour,y\n" + rows), config)
    assert schema.numeric == ["num"] and schema.categorical == ["colour"]
    assert schema.classes == ["yes", "no"]
    assert frame["num"].dtype == "float64"


def test_numeric_labels_become_text(tmp_path):
    frame, schema = load_dataset(csv(tmp_path, "a,y\n1,0\n2,1\n3,1.0\n4,0\n"), BINARY)
    assert schema.classes == ["0", "1"]
    assert set(frame["y"]) == {"0", "1"}


def test_binary_with_three_classes(tmp_path):
    with pytest.raises(UserError, match=r"set schema\.task: multiclass"):
        load_dataset(csv(tmp_path, "a,y\n1,a\n2,b\n3,c\n4,a\n5,b\n6,c\n"), BINARY)


def test_unknown_positive_class(tmp_path):
    config = SchemaConfig(target="y", task="binary", positive_class="maybe")
    with pytest.raises(UserError, match="positive_class 'maybe' is not one of"):
        load_dataset(csv(tmp_path, "a,y\n1,a\n2,b\n3,a\n4,b\n"), config)


def test_rows_without_target_are_dropped(tmp_path):
    frame, _ = load_dataset(csv(tmp_path, "a,y\n1,a\n2,\n3,b\n4,a\n5,b\n"), BINARY)
    assert len(frame) == 4


def test_class_seen_once_cannot_be_stratified(tmp_path):
    with pytest.raises(UserError, match="appear only once"):
        load_dataset(csv(tmp_path, "a,y\n1,a\n2,b\n3,a\n4,b\n5,c\n"), SchemaConfig(target="y", task="multiclass"))


def test_regression_target_must_be_numeric(tmp_path):
    with pytest.raises(UserError, match=r"must be numeric for task regression; text at line\(s\) 3"):
        load_dataset(csv(tmp_path, "a,y\n1,2.5\n2,lots\n"), SchemaConfig(target="y", task="regression"))


def test_infinite_values(tmp_path):
    with pytest.raises(UserError, match="infinite values"):
        load_dataset(csv(tmp_path, "a,y\n1,a\ninf,b\n3,a\n4,b\n"), BINARY)


def test_unknown_drop_column(tmp_path):
    config = SchemaConfig(target="y", task="binary", drop=["ghost"])
    with pytest.raises(UserError, match=r"schema\.drop lists"):
        load_dataset(csv(tmp_path, "a,y\n1,a\n2,b\n"), config)


def test_explicit_schema_is_used_as_is(tmp_path):
    config = SchemaConfig(target="y", task="binary", numeric=["a"], categorical=["b"])
    frame, schema = load_dataset(csv(tmp_path, "a,b,c,y\n1,1,x,a\n2,2,x,b\n3,1,x,a\n4,2,x,b\n"), config)
    assert schema.features == ["a", "b"] and "c" not in frame
    assert set(frame["b"]) == {"1", "2"}


def test_split_is_stratified_and_seeded(tmp_path):
    frame = pd.DataFrame({"a": range(100), "y": ["p"] * 20 + ["n"] * 80})
    _, schema = load_dataset(csv(tmp_path, "a,y\n1,p\n2,n\n3,p\n4,n\n"), BINARY)
    train, test = split(frame, schema, 0.25, seed=3)
    again, _ = split(frame, schema, 0.25, seed=3)
    assert (test["y"] == "p").sum() == 5 and train.index.equals(again.index)


def test_split_too_small(tmp_path):
    frame, schema = load_dataset(csv(tmp_path, "a,y\n1,a\n2,b\n3,a\n4,b\n"), BINARY)
    with pytest.raises(UserError, match="cannot split 4 rows"):
        split(frame, schema, 0.1, seed=0)
