"""`make data-refresh` (CT): the newest data from data.source, validated as `prep` would, then recorded by DVC.

The new file is written beside data.path, checked with prep's own loading and split, and only then renamed over
data.path: bad data leaves data/ and data.dvc as they were. Without data.source the refresh is `make data`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from mlops_template.core.config import Params, ReadConfig, SourceConfig
from mlops_template.core.errors import UserError, one_line
from mlops_template.core.fsutil import atomic_path, write_text
from mlops_template.core.tabular import read_csv
from mlops_template.pipeline.data import load_dataset, split
from mlops_template.pipeline.rawdata import ensure, tracking
from mlops_template.pipeline.remote import DVC, default_remote, transfer

log = logging.getLogger(__name__)
RECORD = Path("reports/data-refresh.json")  # rows and DVC hash before/after, for the CT report
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class Refresh:
    """What one refresh changed: the CT report shows it."""

    source: str
    path: str
    rows_before: int | None
    rows_after: int
    md5_before: str | None
    md5_after: str | None


def describe(source: SourceConfig) -> str:
    """The source as the report and errors name it (never the database URL: it may hold a password)."""
    if source.url is not None:
        return source.url
    return f"SQL query on ${source.database_url_env}"


def is_parquet(source: SourceConfig) -> bool:
    if source.format != "auto":
        return source.format == "parquet"
    return PurePosixPath(source.url.split("?", 1)[0]).suffix.lower() in PARQUET_SUFFIXES


def download(url: str, target: Path) -> None:
    """Copy the file at a path or fsspec URL to `target`, byte for byte."""
    import fsspec  # only data-refresh needs it

    try:
        with fsspec.open(url, "rb") as remote, open(target, "wb") as local:
            shutil.copyfileobj(remote, local, 1 << 20)
    except ImportError as exc:  # gs:// needs gcsfs, s3:// needs s3fs
        raise UserError(f"data.source.url {url}: {one_line(exc)} (add it, pinned, to requirements-dev.txt)") from None
    except FileNotFoundError:
        raise UserError(f"data.source.url {url}: not found; fix data.source.url in params.yaml") from None
    except Exception as exc:  # noqa: BLE001 - OSError, aiohttp's, botocore's, google's own errors: one line each
        raise UserError(f"data.source.url {url}: cannot read it ({type(exc).__name__}: {one_line(exc)})") from None


def query(source: SourceConfig) -> pd.DataFrame:
    """The rows of data.source.query, on the database named by the environment variable."""
    import sqlalchemy  # only data-refresh needs it

    url = os.environ.get(source.database_url_env)
    if not url:
        raise UserError(
            f"data.source.query needs the database URL in the environment variable {source.database_url_env} "
            "(e.g. sqlite:///path/to.db, postgresql://user@host/db; a CI secret), never in params.yaml"
        )
    try:
        engine = sqlalchemy.create_engine(url)
    except Exception as exc:  # noqa: BLE001 - a malformed URL or a missing driver; the URL is not shown (password)
        raise UserError(f"${source.database_url_env}: not a usable database URL ({type(exc).__name__})") from None
    try:
        with engine.connect() as connection:
            return pd.read_sql_query(sqlalchemy.text(source.query), connection)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = one_line(getattr(exc, "orig", None) or exc)
        raise UserError(f"data.source.query on ${source.database_url_env} failed: {reason}") from None
    finally:
        engine.dispose()


def write_csv(frame: pd.DataFrame, target: Path, read: ReadConfig) -> None:
    """A table as the CSV data.read describes, so `prep` reads it back as it reads any CSV."""
    delimiter = "," if read.delimiter == "auto" else read.delimiter
    frame.to_csv(target, index=False, sep=delimiter, decimal=read.decimal, encoding=read.encoding)


def fetch(source: SourceConfig, read: ReadConfig, target: Path) -> None:
    """data.source -> `target` as a CSV: a CSV byte for byte, a Parquet file or a query's rows rewritten."""
    if source.query is not None:
        write_csv(query(source), target, read)
        return
    if not is_parquet(source):
        download(source.url, target)
        return
    download(source.url, target.with_suffix(".parquet"))
    try:
        frame = pd.read_parquet(target.with_suffix(".parquet"))
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors: not Parquet, truncated
        raise UserError(f"data.source.url {source.url}: not a readable Parquet file ({one_line(exc)})") from None
    finally:
        target.with_suffix(".parquet").unlink(missing_ok=True)
    write_csv(frame, target, read)


def validate(path: Path, params: Params, shown: str) -> int:
    """prep's checks (read, schema, clean, classes, split) on `path`; errors name `shown`; returns the row count."""
    try:
        frame, schema = load_dataset(path, params.schema_, params.data.read)
        split(frame, schema, params.prep.test_size, params.prep.seed)
        return len(read_csv(path, params.data.read))
    except UserError as exc:
        message = f"data.source: the new data is refused, nothing changed: {exc}"
        raise UserError(message.replace(str(path), shown)) from None


def current(params: Params) -> None:
    """The data data.dvc records now, so the report can count the rows before the refresh: from the DVC cache
    (CT restores it), else `make data` (remote or sample)."""
    track = tracking(params.data.path)
    if track is not None and not params.data.path.is_file():
        subprocess.run([*DVC, "checkout", "--quiet", str(track.dvc_file)], capture_output=True, check=False)
    try:
        ensure(params)
    except UserError as exc:
        log.warning("data-refresh: the current data is not available, rows before unknown: %s", exc)


def rows(path: Path, read: ReadConfig) -> int | None:
    """Rows of the current data file, None when there is none (or it does not read)."""
    try:
        return len(read_csv(path, read)) if path.is_file() else None
    except UserError:
        return None


def dvc(*args: str) -> None:
    result = subprocess.run([*DVC, *args], check=False)
    if result.returncode != 0:
        raise UserError(f"`dvc {' '.join(args)}` failed (exit {result.returncode}); see DVC's message above")


def record(path: Path) -> tuple[Path, str | None]:
    """The DVC output that holds `path` (its tracked folder, e.g. data/) and its md5; (path, None): untracked."""
    track = tracking(path)
    return (track.out, track.md5) if track else (path, None)


def refresh(params: Params, output: Path = RECORD) -> Refresh:
    """Fetch data.source into data.path (or `make data` without one), `dvc add` it, `dvc push` with a remote."""
    path, source = params.data.path, params.data.source
    if source is not None:
        current(params)
    before = rows(path, params.data.read)
    out, md5_before = record(path)
    if source is None:
        ensure(params)
        shown = "make data (no data.source in params.yaml)"
        after = rows(path, params.data.read) or 0
    else:
        shown = describe(source)
        with atomic_path(path) as tmp:
            fetch(source, params.data.read, tmp)
            after = validate(tmp, params, shown)
        log.info("data-refresh: %d rows from %s -> %s", after, shown, path)
    if md5_before is None:  # data kept in git (`dvc remove data.dvc`): nothing for DVC to record
        log.warning("data-refresh: %s is not tracked by DVC; commit it with git", path)
    else:
        dvc("add", str(out))
        if default_remote() is not None:
            transfer("push", str(out.with_name(out.name + ".dvc")))
    result = Refresh(shown, str(path), before, after, md5_before, record(path)[1])
    write_text(output, json.dumps(asdict(result), indent=2) + "\n")
    return result


def read_record(path: Path = RECORD) -> Refresh | None:
    """The last refresh's record, None when this run did not refresh."""
    if not path.is_file():
        return None
    return Refresh(**json.loads(path.read_text(encoding="utf-8")))
