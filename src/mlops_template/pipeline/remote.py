"""The DVC remote: where data and pipeline outputs live between clones, CI and CD.

A remote comes from `.dvc/config` (`dvc remote add -d storage gs://bucket/path`, committed) or from the
environment variable DVC_REMOTE_URL (CI's repository variable), which is written to the clone's own
`.dvc/config.local` as the default remote. Credentials are never configuration: DVC's plugins find them
(Google: GOOGLE_APPLICATION_CREDENTIALS, which google-github-actions/auth sets; `gcloud auth
application-default login` on a laptop). A pull or push that fails is one line naming the remote and the fix,
never DVC's traceback.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlops_template.core.errors import UserError, one_line
from mlops_template.pipeline import remote_probe

log = logging.getLogger(__name__)
DVC = [sys.executable, "-m", "dvc"]  # this interpreter's DVC, whatever PATH says
URL_VARIABLE = "DVC_REMOTE_URL"
NAME = "storage"  # the name DVC_REMOTE_URL is configured under (README's `dvc remote add -d storage ...`)
SETUP = "README 'Set up CI/CD in your fork'"

# What DVC's plugins print, by cause (gcsfs, s3fs/botocore, adlfs, google-auth, aiohttp).
UNREACHABLE = re.compile(
    r"cannot connect to host|connection refused|name or service not known|"
    r"temporary failure in name resolution|nodename nor servname|timed? ?out|network is unreachable|"
    r"endpointconnectionerror|could not connect",
    re.IGNORECASE,
)
REFUSED = re.compile(
    r"invalid_grant|refresherror|unauthori[sz]ed|forbidden|permission|access ?denied|\b40[13]\b|"
    r"credentials|invalidaccesskeyid|signaturedoesnotmatch|expiredtoken|invalid jwt",
    re.IGNORECASE,
)
MISSING = re.compile(r"failed to (download|pull)|missing|not found|no such", re.IGNORECASE)
REMOTE_URL = re.compile(r"remote\..+\.url")  # a `dvc config --list` key: remote.<name>.url


@dataclass(frozen=True)
class Remote:
    name: str
    url: str
    # its options as `dvc config --list` gave them (endpointurl, credentialpath...: what the gs:// probe reads)
    options: Mapping[str, str] = field(default_factory=dict, compare=False)


def dvc(*args: str) -> subprocess.CompletedProcess:
    # DVC_EXECUTABLE: a DVC outside this interpreter (the Heroku build's, in a venv that stays out of the slug)
    command = [executable] if (executable := os.environ.get("DVC_EXECUTABLE", "").strip()) else DVC
    return subprocess.run([*command, *args], capture_output=True, text=True, check=False)


def configure() -> None:
    """DVC_REMOTE_URL, when set, becomes this clone's default remote (in .dvc/config.local, never committed)."""
    url = os.environ.get(URL_VARIABLE, "").strip()
    if not url:
        return
    result = dvc("remote", "add", "--local", "--force", "--default", NAME, url)
    if result.returncode != 0:
        raise UserError(
            f"{URL_VARIABLE}={url}: `dvc remote add` refused it: {one_line(result.stderr or result.stdout)}"
        )


def default_remote() -> Remote | None:
    """The DVC remote `dvc pull` would use (DVC_REMOTE_URL first): the default one, else the first listed."""
    configure()
    # `dvc config --list`, not `dvc remote list`: that one is a table wrapped at the terminal's width (80 columns
    # without a terminal), which puts a long URL and its "(default)" on lines of their own
    result = dvc("config", "--list")
    if result.returncode != 0:
        raise UserError(f"`dvc config --list` failed: {result.stderr.strip() or result.stdout.strip()}")
    settings = [line.partition("=")[::2] for line in result.stdout.splitlines()]
    urls = {key[len("remote.") : -len(".url")]: value for key, value in settings if REMOTE_URL.fullmatch(key)}
    default = dict(settings).get("core.remote", "")
    name = default if default in urls else next(iter(urls), None)
    if name is None:
        return None
    return Remote(name, urls[name], remote_probe.options(result.stdout, name))


def failure(action: str, remote: Remote, output: str) -> UserError:
    """One line for a failed `dvc pull`/`dvc push`: credentials refused, unreachable, or files missing."""
    where = f"the DVC remote '{remote.name}' ({remote.url})"
    # DVC's ERROR lines carry the cause; plugins' warnings (e.g. gcsfs on absent default credentials) do not
    errors = [line.removeprefix("ERROR:").strip() for line in output.splitlines() if line.startswith("ERROR:")]
    errors = errors or [line.strip() for line in output.splitlines() if line.strip()][-1:] or ["no output"]

    def cause(pattern: re.Pattern) -> str | None:
        return next((one_line(line) for line in errors if pattern.search(line)), None)

    if reason := cause(REFUSED):
        return UserError(
            f"`dvc {action}`: {where} refused this run's credentials ({reason}); give the run credentials that "
            f"may read and write it (Google: GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default "
            f"login`; CI: {SETUP})"
        )
    if reason := cause(UNREACHABLE):
        return UserError(
            f"`dvc {action}`: cannot reach {where} ({reason}); check its URL ({URL_VARIABLE} or .dvc/config) and "
            "the network"
        )
    if action == "pull" and (reason := cause(MISSING)):
        return UserError(
            f"`dvc pull`: {where} lacks files this commit records ({reason}); push them from the clone that made "
            "them (`make push`)"
        )
    return UserError(f"`dvc {action}` with {where} failed: {one_line(errors[-1])}")


def check(action: str, remote: Remote) -> None:
    """Refused credentials or an unreachable gs:// remote: the one line now, not after gcsfs's minutes of retries."""
    if reason := remote_probe.problem(remote.url, remote.options):
        raise failure(action, remote, f"ERROR: {reason}")


def fetch_outputs(remote: Remote) -> None:
    """`dvc fetch --run-cache` into the DVC cache: the outputs dvc.lock names and the run-cache, as far as the remote
    has them, so `dvc repro` checks out what someone pushed for this lock instead of training it again. What nobody
    pushed is a warning, never an error: `dvc repro` makes it."""
    result = dvc("fetch", "--run-cache")
    output = result.stdout + result.stderr
    if result.returncode != 0:
        log.warning("%s; the pipeline makes what it could not fetch", failure("fetch", remote, output))
    elif "Missing cache files" in output:  # DVC's warning: neither in the local cache nor on the remote
        log.warning(
            "dvc fetch: outputs dvc.lock names are not on the DVC remote '%s' (%s), nobody pushed them: the pipeline "
            "makes them (push yours with `make push` so CI fetches them)",
            remote.name,
            remote.url,
        )
    else:
        log.info("dvc fetch --run-cache (%s): the pipeline outputs and run-cache of this lock", remote.url)


def transfer(action: str, *targets: str, run_cache: bool = False, remote: Remote | None = None) -> Remote:
    """`dvc pull|push [targets]` with the default remote; DVC's report on success, one line on failure."""
    remote = remote or default_remote()
    if remote is None:
        raise UserError(f"`dvc {action}`: no DVC remote is configured; set {URL_VARIABLE} or see {SETUP}")
    check(action, remote)
    result = dvc(action, *(["--run-cache"] if run_cache else []), *targets)
    if result.returncode != 0:
        raise failure(action, remote, result.stdout + result.stderr)
    summary = [line for line in result.stdout.splitlines() if line.strip()]
    log.info("dvc %s (%s): %s", action, remote.url, summary[-1] if summary else "done")
    return remote
