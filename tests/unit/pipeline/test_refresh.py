"""data.source's format and how reports and errors name it (the fetching itself: tests/integration)."""

import pytest

from mlops_template.core.config import SourceConfig
from mlops_template.pipeline.refresh import describe, is_parquet


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
