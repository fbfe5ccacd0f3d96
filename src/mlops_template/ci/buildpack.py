"""Heroku buildpack build (`bin/post_compile`): pull the gated bundle dvc.lock names, verify it, or fail the build.

The build directory is a git tree without `.git`, so DVC runs in no-SCM mode; its settings go to
`.dvc/config.local` and its cache outside the slug, and both are gone before the slug is packed. DVC itself is
DVC_EXECUTABLE, from a throwaway venv the hook made: the slug carries the runtime requirements only. The remote
and its credentials are the app's config vars (DVC_REMOTE_URL, as in CI; see pipeline/remote.py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlops_template.core.bundle import Bundle, load_bundle
from mlops_template.core.config import Params
from mlops_template.core.errors import UserError, one_line
from mlops_template.pipeline import remote

log = logging.getLogger(__name__)
HOW = "README 'Heroku buildpack'"
KEY_VARIABLE = "GOOGLE_APPLICATION_CREDENTIALS_JSON"  # config vars are strings: the key file's content


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


def configure(cache_dir: Path | None) -> None:
    """No-SCM mode (the build directory has no .git) and DVC's cache outside the slug, in .dvc/config.local."""
    for key, value in [("core.no_scm", "true")] + ([("cache.dir", str(cache_dir))] if cache_dir else []):
        result = remote.dvc("config", "--local", key, value)
        if result.returncode != 0:
            raise UserError(f"`dvc config --local {key} {value}` failed: {one_line(result.stderr or result.stdout)}")


def pull(params: Params, cache_dir: Path | None = None) -> Bundle:
    """`dvc pull` the bundle dvc.lock records, then the same checks as the service (checksums, VALIDATED)."""
    bundle_dir = params.gate.bundle_dir
    try:
        configure(cache_dir)
        found = remote.default_remote()
        if found is None:
            raise UserError(
                f"no DVC remote to pull {bundle_dir} from: set the app's config var {remote.URL_VARIABLE} and the "
                f"remote's credentials (e.g. `heroku config:set {remote.URL_VARIABLE}=gs://bucket/path`; {HOW})"
            )
        check_credentials(found.url)
        with google_key():
            try:
                remote.transfer("pull", str(bundle_dir))
            except UserError as exc:  # its hint names CI's settings: on Heroku they are config vars
                raise UserError(f"{exc} [Heroku: the remote and its credentials are config vars; {HOW}]") from None
    finally:  # the slug carries the bundle, not DVC's build-time state (local config, indexes, locks)
        Path(".dvc/config.local").unlink(missing_ok=True)
        shutil.rmtree(".dvc/tmp", ignore_errors=True)
    bundle = load_bundle(bundle_dir)
    log.info("buildpack: %s model %s is %s (checksums match)", bundle.path, bundle.version, bundle.verdict)
    return bundle
