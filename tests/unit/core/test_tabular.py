"""data.read: any CSV a team has (delimiter or sniffed, decimal and thousands separators, encoding, NA spellings),
the same for training data, batch predictions and drift batches; wrong settings are one clear error."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlops_template.core.config import ReadConfig, load_params
from mlops_template.core.errors import UserError
from mlops_template.core.tabular import read_csv
from tests.conftest import write_params

EUROPEAN = "name;income;rate\nAnna;1.234,5;0,25\nBo;987;?\n"


def write(tmp_path: Path, text: str, encoding: str = "utf-8", name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_a_spreadsheet_export_from_much_of_europe(tmp_path: Path) -> None:
    read = ReadConfig(delimiter=";", decimal=",", thousands=".", na_values=["?"])
    frame = read_csv(write(tmp_path, EUROPEAN), read)
    assert list(frame.columns) == ["name", "income", "rate"]
    assert frame["income"].tolist() == [1234.5, 987.0]
    assert frame["rate"].iloc[0] == 0.25 and pd.isna(frame["rate"].iloc[1])


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_auto_sniffs_the_delimiter(tmp_path: Path, delimiter: str) -> None:
    text = "\n".join(delimiter.join(row) for row in [["a", "b", "c"], ["1", "x", "2.5"], ["3", "y", "4"]]) + "\n"
    frame = read_csv(write(tmp_path, text), ReadConfig(delimiter="auto"))
    assert list(frame.columns) == ["a", "b", "c"] and frame["c"].tolist() == [2.5, 4.0]


def test_the_wrong_delimiter_is_named_not_a_missing_column(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"looks semicolon-separated; set data\.read\.delimiter: ';'") as error:
        read_csv(write(tmp_path, EUROPEAN))
    assert "data.csv" in str(error.value)
    tabbed = write(tmp_path, "a\tb\n1\t2\n", name="tabbed.csv")
    with pytest.raises(UserError, match=r"tab-separated; set data\.read\.delimiter: '\\t'"):
        read_csv(tabbed)


def test_the_wrong_encoding_names_the_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "ville,prix\nSaint-Étienne,3\nOrléans,4\n", encoding="latin-1")
    with pytest.raises(UserError, match=r"not readable as utf-8 .*data\.read\.encoding"):
        read_csv(path)
    assert read_csv(path, ReadConfig(encoding="latin-1"))["ville"].tolist() == ["Saint-Étienne", "Orléans"]


def test_an_unsniffable_file_asks_for_the_delimiter(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"cannot tell its delimiter.*data\.read\.delimiter"):
        read_csv(write(tmp_path, "just one word\n"), ReadConfig(delimiter="auto"))


@pytest.mark.parametrize(
    ("read", "message"),
    [
        ({"delimiter": ";;"}, "one character or auto"),
        ({"delimiter": ";", "decimal": ";"}, "cannot also be the delimiter"),
        ({"encoding": "utf-9"}, "unknown encoding 'utf-9'"),
        ({"decimal": ",,"}, r"data\.read\.decimal"),
    ],
)
def test_read_settings_are_checked_when_params_load(tmp_path: Path, read: dict, message: str) -> None:
    write_params(tmp_path, data={"read": read})
    with pytest.raises(UserError, match=message):
        load_params(tmp_path / "params.yaml")
