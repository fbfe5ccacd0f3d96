"""`data-refresh` from real sources into a clone-like DVC project: a CSV over HTTP on loopback, a local Parquet
file, a SQLite database through SQLAlchemy; bad new data changes nothing. Then CT's challenger gate: the bundle
main's dvc.lock records, fetched with `dvc get`, scored on the holdout. The tests run in order on one project,
each from the state the previous one left."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlops_template.ci import challenge
from mlops_template.cli import main
from mlops_template.core.config import load_params
from mlops_template.pipeline.challenger import Scored, production
from mlops_template.pipeline.gate import comparison_paths
from mlops_template.pipeline.sample import write_sample
from tests.conftest import FakeHandler, dvc_project_copy, loopback_server, sh, write_params

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dvc_project_copy(tmp_path_factory.mktemp("refresh-project"))


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """New data in every form: CSV, Parquet, a SQLite table, and a CSV without the target column."""
    folder = tmp_path_factory.mktemp("sources")
    write_sample(folder / "new.csv", rows=3000, seed=12)
    frame = pd.read_csv(folder / "new.csv")
    frame.head(2800).to_parquet(folder / "new.parquet", index=False)
    with sqlite3.connect(folder / "warehouse.db") as db:
        frame.to_sql("loans", db, index=False)
    frame.drop(columns=["loan_status"]).to_csv(folder / "no-target.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def http(sources: Path) -> Iterator[str]:
    handler = functools.partial(QuietFiles, directory=str(sources))
    with loopback_server(handler) as url:
        yield url


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def refresh(project: Path, monkeypatch: pytest.MonkeyPatch, source: dict | None) -> tuple[int, dict | None]:
    """`data-refresh` in `project` with data.source = `source`; the exit code and the refresh record."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    write_params(project, data={**params["data"], "source": source})
    monkeypatch.chdir(project)
    (project / "reports" / "data-refresh.json").unlink(missing_ok=True)
    code = main(["data-refresh"])
    record = project / "reports" / "data-refresh.json"
    return code, json.loads(record.read_text()) if record.is_file() else None


def md5(project: Path) -> str:
    return yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]


def test_csv_over_http_replaces_the_data_and_its_dvc_record(project: Path, sources: Path, http: str, monkeypatch):
    before = md5(project)
    code, record = refresh(project, monkeypatch, {"url": f"{http}/new.csv"})
    assert code == 0
    assert (project / "data" / "loans.csv").read_bytes() == (sources / "new.csv").read_bytes()  # byte for byte
    assert md5(project) != before
    assert record == {
        "source": f"{http}/new.csv",
        "path": "data/loans.csv",
        "rows_before": 2500,  # the project's sample
        "rows_after": 3000,
        "md5_before": before,
        "md5_after": md5(project),
    }
    assert sorted(p.name for p in (project / "data").iterdir()) == ["loans.csv"]  # no temporary file left


def test_parquet_file_is_written_as_the_csv_prep_reads(project: Path, sources: Path, monkeypatch):
    code, record = refresh(project, monkeypatch, {"url": str(sources / "new.parquet")})
    assert code == 0
    assert (record["rows_before"], record["rows_after"]) == (3000, 2800)
    expected = pd.read_parquet(sources / "new.parquet")
    pd.testing.assert_frame_equal(pd.read_csv(project / "data" / "loans.csv"), expected, check_dtype=False)


def test_sql_query_on_sqlite_through_sqlalchemy(project: Path, sources: Path, monkeypatch, capsys):
    query = {"query": "SELECT * FROM loans WHERE loan_id <> 'none'", "database_url_env": "LOANS_DB"}
    monkeypatch.delenv("LOANS_DB", raising=False)
    before = (project / "data" / "loans.csv").read_bytes()
    code, record = refresh(project, monkeypatch, query)
    assert code == 2 and record is None
    err = capsys.readouterr().err
    assert "environment variable LOANS_DB" in err and "never in params.yaml" in err
    assert (project / "data" / "loans.csv").read_bytes() == before

    monkeypatch.setenv("LOANS_DB", f"sqlite:///{sources / 'warehouse.db'}")
    code, record = refresh(project, monkeypatch, query)
    assert code == 0
    assert record["source"] == "SQL query on $LOANS_DB"  # the URL itself is never shown
    assert (record["rows_before"], record["rows_after"]) == (2800, 3000)
    assert len(pd.read_csv(project / "data" / "loans.csv")) == 3000


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("no-target.csv", "['loan_status'] from params.yaml (schema) not found"),
        ("missing.csv", "not found; fix data.source.url"),
    ],
)
def test_bad_new_data_is_one_error_and_changes_nothing(project: Path, http: str, monkeypatch, capsys, source, message):
    data, dvc_file = (project / "data" / "loans.csv").read_bytes(), (project / "data.dvc").read_text()
    code, record = refresh(project, monkeypatch, {"url": f"{http}/{source}"})
    assert code == 2 and record is None
    err = capsys.readouterr().err.strip()
    assert message in err and f"{http}/{source}" in err
    assert ".tmp" not in err  # the error names the source, not the temporary file
    assert (project / "data" / "loans.csv").read_bytes() == data
    assert (project / "data.dvc").read_text() == dvc_file
    assert sorted(p.name for p in (project / "data").iterdir()) == ["loans.csv"]


def test_without_a_source_the_refresh_is_make_data(project: Path, monkeypatch):
    before = md5(project)
    code, record = refresh(project, monkeypatch, None)
    assert code == 0
    assert record["source"].startswith("make data") and record["md5_after"] == before  # the data as it was


def test_challenger_scores_main_s_bundle_on_this_run_s_holdout(project: Path, monkeypatch):
    """main's model, fetched back from the DVC cache, scores its own holdout exactly as `evaluate` did; behind
    PRODUCTION_URL the service must serve that version, else the gate says it compares stored metrics."""
    monkeypatch.chdir(project)
    sh(project, "dvc", "repro")
    sh(project, "git", "add", "-A")
    sh(project, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "trained")
    params = load_params()
    scored = production(params, "main")
    assert isinstance(scored, Scored), scored
    evaluated = json.loads((project / "reports" / "metrics.json").read_text())
    assert scored.rows == 600  # 20% of the 3000 rows the SQL refresh left
    assert scored.metrics == {name: evaluated[name] for name in scored.metrics}
    assert {"roc_auc", "f1", "log_loss"} <= set(scored.metrics)

    served = {"model_version": scored.version, "metrics": {**evaluated, "roc_auc": 0.5}}

    class Service(FakeHandler):
        def do_GET(self) -> None:
            self.reply(200, served)

    output = project / "reports" / "production-metrics.json"
    gate_md = project / comparison_paths(params)[0]  # a gate against a baseline writes there, not reports/gate.md
    with loopback_server(Service) as url:
        assert challenge.run(params, "main", url, output) == "VALIDATED"
        assert f"Baseline: {scored.label}" in gate_md.read_text()
        assert json.loads(output.read_text()) == scored.metrics  # scored, not the service's stored 0.5

        served["model_version"] = "0123456789ab"
        assert challenge.run(params, "main", url, output) == "VALIDATED"
        text = gate_md.read_text()
        assert f"Baseline: the model at {url}: stored metrics" in text
        assert f"{url} serves model 0123456789ab, not {scored.version} (the bundle at main)" in text
        assert json.loads(output.read_text())["roc_auc"] == 0.5
