"""Heroku buildpack build (`bin/post_compile`): pull the gated bundle dvc.lock names, verify it, or fail the build.

The build directory is a git tree without `.git`, so DVC runs in no-SCM mode; its settings go to
`.dvc/config.local` and its cache outside the slug, and both are gone before the slug is packed. The DVC
executable comes from a throwaway environment the hook made: the slug carries the runtime requirements only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mlops_template.core.bundle import Bundle, load_bundle
from mlops_template.core.config import Params
from mlops_template.core.errors import UserError, one_line
from mlops_template.pipeline.rawdata import default_remote

log = logging.getLogger(__name__)
REMOTE_NAME = "deploy"  # the remote DVC_REMOTE_URL defines (local config only: never committed)
HOW = "README 'Heroku buildpack'"
KEY_VARIABLE = "GOOGLE_APPLICATION_CREDENTIALS_JSON"  # config vars are strings: the key file's content


def _dvc(dvc: Sequence[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*dvc, *args], capture_output=True, text=True, check=False)


def _last_error(result: subprocess.CompletedProcess) -> str:
    """DVC's own reason (its last `ERROR:` line), else the last line it printed."""
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR")]
    return one_line((errors or lines or [f"exit {result.returncode}"])[-1])


def configure(dvc: Sequence[str], cache_dir: Path | None) -> None:
    """No-SCM mode, the cache outside the slug, and DVC_REMOTE_URL (a config var) as the default remote."""
    settings = [("core.no_scm", "true")] + ([("cache.dir", str(cache_dir))] if cache_dir else [])
    for key, value in settings:
        result = _dvc(dvc, "config", "--local", key, value)
        if result.returncode != 0:
            raise UserError(f"`dvc config --local {key} {value}` failed: {_last_error(result)}")
    url = os.environ.get("DVC_REMOTE_URL", "").strip()
    if url:
        result = _dvc(dvc, "remote", "add", "--local", "--default", "--force", REMOTE_NAME, url)
        if result.returncode != 0:
            raise UserError(f"DVC_REMOTE_URL={url}: not a DVC remote: {_last_error(result)}")


@contextmanager
def google_key() -> Iterator[None]:
    """A service-account key given as a config var becomes the file Google's libraries read, for this build only."""
    content = os.environ.get(KEY_VARIABLE, "").strip()
    if not content:
        yield
        return
    try:
        json.loads(content)
    except ValueError:
        raise UserError(
            f"{KEY_VARIABLE} is not JSON: set it to the content of the service account's key file"
        ) from None
    before = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as handle:  # mode 0600, deleted after
        handle.write(content)
        handle.flush()
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = handle.name
        try:
            yield
        finally:
            os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS")
            if before is not None:
                os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = before


def check_credentials(url: str) -> None:
    """A Google Cloud Storage remote without a key would fall back to anonymous access: say what to set instead."""
    if url.startswith("gs://") and not (
        os.environ.get(KEY_VARIABLE) or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    ):
        raise UserError(
            f"no credentials for the DVC remote {url}: set the app's config var {KEY_VARIABLE} to the JSON key of a "
            f'service account that may read it (`heroku config:set {KEY_VARIABLE}="$(cat key.json)"`; {HOW})'
        )


def pull(params: Params, dvc: Sequence[str], cache_dir: Path | None = None) -> Bundle:
    """`dvc pull` the bundle dvc.lock records, then the same checks as the service (checksums, VALIDATED)."""
    bundle_dir = params.gate.bundle_dir
    configure(dvc, cache_dir)
    try:
        remote = default_remote(dvc)
        if remote is None:
            raise UserError(
                f"no DVC remote to pull {bundle_dir} from: set the app's config var DVC_REMOTE_URL and the "
                f"remote's credentials (e.g. `heroku config:set DVC_REMOTE_URL=gs://bucket/path`; {HOW})"
            )
        check_credentials(remote.url)
        log.info("buildpack: dvc pull %s from remote '%s' (%s)", bundle_dir, remote.name, remote.url)
        with google_key():
            result = _dvc(dvc, "pull", str(bundle_dir))
        if result.returncode != 0:
            raise UserError(
                f"`dvc pull {bundle_dir}` from remote '{remote.name}' ({remote.url}) failed: {_last_error(result)}; "
                f"check the remote's credentials in the app's config vars and that CI pushed this commit's bundle"
            )
    finally:  # the slug carries the bundle, not DVC's build-time state (local config, indexes, locks)
        Path(".dvc/config.local").unlink(missing_ok=True)
        shutil.rmtree(".dvc/tmp", ignore_errors=True)
    bundle = load_bundle(bundle_dir)
    log.info("buildpack: %s model %s is %s (checksums match)", bundle.path, bundle.version, bundle.verdict)
    return bundle
