"""data.source's format, how reports and errors name it, data kept in git (real sources: tests/integration)."""

from pathlib import Path

import pytest

from mlops_template.core.config import SourceConfig, load_params
from mlops_template.pipeline.refresh import describe, is_parquet, refresh
from mlops_template.pipeline.sample import write_sample
from tests.conftest import write_params


@pytest.mark.parametrize(
    ("url", "fmt", "parquet"),
    [
        ("https://example.org/loans.parquet?token=abc", "auto", True),
        ("gs://bucket/exports/loans.PQ", "auto", True),
        ("s3://bucket/loans.csv", "auto", False),
        ("https://example.org/export?id=7", "parquet", True),
        ("data/loans.parquet", "csv", False),
    ],
)
def test_parquet_by_extension_unless_the_format_says(url: str, fmt: str, parquet: bool):
    assert is_parquet(SourceConfig(url=url, format=fmt)) is parquet


def test_a_query_source_is_named_by_its_env_var_never_its_url():
    source = SourceConfig(query="SELECT * FROM loans", database_url_env="WAREHOUSE_URL")
    assert describe(source) == "SQL query on $WAREHOUSE_URL"
    assert describe(SourceConfig(url="gs://bucket/loans.csv")) == "gs://bucket/loans.csv"


def test_data_kept_in_git_is_replaced_without_dvc(workdir: Path):
    """No .dvc file tracks data.path (`dvc remove data.dvc`): the new file replaces it, nothing is dvc-added."""
    write_sample(workdir / "incoming.csv", rows=2000, seed=5)
    write_params(workdir, data={"source": {"url": str(workdir / "incoming.csv")}})
    done = refresh(load_params(), workdir / "record.json")
    assert (workdir / "data" / "loans.csv").read_bytes() == (workdir / "incoming.csv").read_bytes()
    assert (done.rows_before, done.rows_after, done.md5_before, done.md5_after) == (3000, 2000, None, None)
    assert not list(workdir.rglob("*.dvc"))


def test_an_object_store_url_without_its_fsspec_plugin_names_the_package(tmp_path: Path):
    from mlops_template.core.errors import UserError
    from mlops_template.pipeline.refresh import download

    # Azure: a store whose plugin (adlfs) this project never installs (gcsfs and s3fs may come with DVC's plugins)
    with pytest.raises(UserError, match=r"az://box/loans.csv: Install adlfs .*requirements-dev.txt"):
        download("az://box/loans.csv", tmp_path / "loans.csv")
