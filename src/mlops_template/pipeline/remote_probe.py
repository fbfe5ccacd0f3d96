"""A quick look at a gs:// DVC remote before DVC uses it: credentials the token endpoint refuses for good, or a
storage endpoint that does not answer, are reported in seconds. DVC's GCS plugin (gcsfs) retries both six times per
request with back-off, so `dvc pull` reported them only after two minutes or more, and no retry can fix either.

It looks only at what gcsfs would use: the key file in the remote's `credentialpath` or GOOGLE_APPLICATION_CREDENTIALS,
and the endpoint (the remote's `endpointurl`, else STORAGE_EMULATOR_HOST, else Google's). Default credentials
without a key file (gcloud's, a cloud's metadata server) are left to DVC, because finding them probes the network.
Anything else (a transient error, an HTTP answer of any status) is also left to DVC and its retries. Other
schemes (s3://, azure://, paths) are not probed.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from pathlib import Path

GOOGLE = "https://storage.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/devstorage.full_control"  # gcsfs's default access, as DVC opens it
CONNECT_SECONDS = 10.0


def options(config_list: str, name: str) -> dict[str, str]:
    """The remote's options from `dvc config --list` output (lines `remote.<name>.<option>=<value>`)."""
    prefix = f"remote.{name}."
    pairs = (line.partition("=") for line in config_list.splitlines() if line.startswith(prefix))
    return {key.removeprefix(prefix): value.strip() for key, _, value in pairs}


def endpoint(remote_options: Mapping[str, str]) -> str:
    """The storage endpoint gcsfs sends requests to (its own order: endpointurl, emulator, Google)."""
    url = remote_options.get("endpointurl") or os.environ.get("STORAGE_EMULATOR_HOST", "").strip() or GOOGLE
    return url if url.startswith(("http://", "https://")) else f"http://{url}"


def refused(key_file: str) -> str | None:
    """Why the token endpoint refuses the key file's credentials for good; None when it accepts them or the
    failure may pass (a retryable error, a file that is no service-account or user key: DVC reports those)."""
    from google.auth.exceptions import GoogleAuthError, RefreshError
    from google.auth.transport.requests import Request
    from google.oauth2 import credentials as user
    from google.oauth2 import service_account

    load = {"service_account": service_account.Credentials.from_service_account_info,
            "authorized_user": user.Credentials.from_authorized_user_info}  # fmt: skip
    try:
        info = json.loads(Path(key_file).read_text(encoding="utf-8"))
        kind = load.get(info.get("type")) if isinstance(info, dict) else None
        if kind is None:
            return None  # e.g. external_account (Workload Identity Federation): google-auth's own flow, in DVC
        kind(info, scopes=[SCOPE]).refresh(Request())
    except RefreshError as error:
        return None if error.retryable else f"RefreshError: {error.args[0] if error.args else error}"
    except (GoogleAuthError, OSError, ValueError):
        return None
    return None


def unreachable(url: str) -> str | None:
    """Why nothing answers at `url` (connection refused, unknown host, no answer in CONNECT_SECONDS); None once
    anything answers, with any status."""
    import aiohttp  # gcsfs's HTTP client: the same connection errors, in the same words

    async def connect() -> None:
        timeout = aiohttp.ClientTimeout(total=2 * CONNECT_SECONDS, sock_connect=CONNECT_SECONDS)
        # trust_env: proxies from the environment, as DVC's session takes them
        async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as session, session.get(url):
            return

    try:
        asyncio.run(connect())
    except aiohttp.ClientConnectorError as error:
        return str(error)
    except aiohttp.ConnectionTimeoutError:
        return f"{url}: connection timed out after {CONNECT_SECONDS:.0f} s"
    except (aiohttp.ClientError, TimeoutError):
        return None  # connected: DVC's own requests tell the rest
    return None


def problem(url: str, remote_options: Mapping[str, str]) -> str | None:
    """Credentials refused or endpoint unreachable for the gs:// remote at `url`, as one line; None otherwise."""
    if not url.startswith(("gs://", "gcs://")):
        return None
    try:
        import aiohttp  # noqa: F401 - both come with DVC's GCS plugin (dvc-gs, gcsfs)
        import google.auth  # noqa: F401
    except ImportError:
        return None  # DVC runs from another environment (DVC_EXECUTABLE, the Heroku build's): it reports alone
    key_file = remote_options.get("credentialpath") or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "").strip()
    anonymous = remote_options.get("allow_anonymous_login", "").lower() == "true"
    if key_file and not anonymous and (reason := refused(key_file)):
        return reason
    return unreachable(endpoint(remote_options))
