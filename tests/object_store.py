"""A real object store on loopback for DVC remote tests: the Google Cloud Storage emulator (PyPI
`gcp-storage-emulator`) on a free port, and the OAuth token endpoint of Google (which this machine cannot reach)
as a loopback stand-in that checks what it is sent.

The session fixture `object_store` (tests/conftest.py) starts both once. Use a fresh prefix per test:

    remote = object_store.url("my-test")          # gs://<bucket>/my-test, for `dvc remote add` or DVC_REMOTE_URL
    env = object_store.env()                        # STORAGE_EMULATOR_HOST + GOOGLE_APPLICATION_CREDENTIALS
    env = object_store.env(object_store.revoked)    # a key Google refuses (invalid_grant): wrong credentials
    object_store.token_requests                     # the JWT assertions google-auth sent (claims, key id)

gcsfs (dvc-gs's filesystem) sends every request to STORAGE_EMULATOR_HOST when it is set, and authenticates the way
it does against Google: google-auth reads the service-account key file GOOGLE_APPLICATION_CREDENTIALS names, signs
a JWT and exchanges it at the key's `token_uri`, here the loopback endpoint. The emulator itself checks no tokens
and has no gRPC control plane (see `env`).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import FakeHandler, free_port, loopback_server, missing

BUCKET = "mlops-template-dvc"
GOOD_KEY, REVOKED_KEY = "test-key-good", "test-key-revoked"


@dataclass
class ObjectStore:
    """The running emulator: its endpoint, a bucket, and two service-account key files (accepted, revoked)."""

    endpoint: str
    bucket: str
    credentials: Path
    revoked: Path
    token_requests: list[dict] = field(default_factory=list)

    def url(self, prefix: str) -> str:
        return f"gs://{self.bucket}/{prefix}"

    def env(self, credentials: Path | None = None) -> dict[str, str]:
        """What a process needs to use the store as Google Cloud Storage (gcsfs, dvc-gs)."""
        return {
            "STORAGE_EMULATOR_HOST": self.endpoint,
            "GOOGLE_APPLICATION_CREDENTIALS": str(credentials or self.credentials),
            # gcsfs asks the gRPC Storage Control API whether a bucket is zonal or hierarchical (on by default since
            # 2026); the emulator serves HTTP only, so with credentials each call would wait for its 30 s timeout
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }

    def objects(self, prefix: str) -> list[str]:
        """Names of the objects under `prefix` in the bucket (the emulator's JSON API)."""
        query = urllib.parse.urlencode({"prefix": prefix})
        with urllib.request.urlopen(f"{self.endpoint}/storage/v1/b/{self.bucket}/o?{query}", timeout=10) as response:
            return [item["name"] for item in json.load(response).get("items", [])]


def _b64json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _key_file(path: Path, key_id: str, token_uri: str) -> Path:
    """A service-account key file like the one `gcloud iam service-accounts keys create` writes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": "dvc@test-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info), encoding="utf-8")
    return path


def token_handler(requests: list[dict]) -> type[FakeHandler]:
    """Google's OAuth token endpoint for service accounts: a JWT-bearer grant; the revoked key gets invalid_grant."""

    class Handler(FakeHandler):
        def do_POST(self) -> None:
            form = urllib.parse.parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
            grant = form.get("grant_type", [""])[0]
            header, claims, _signature = form.get("assertion", ["..."])[0].split(".")
            key_id = _b64json(header).get("kid")
            requests.append({"grant_type": grant, "kid": key_id, "claims": _b64json(claims)})
            if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer" or key_id != GOOD_KEY:
                return self.reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
            self.reply(200, {"access_token": "ya29.test-token", "expires_in": 3600, "token_type": "Bearer"})

    return Handler


def _wait(endpoint: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gcp-storage-emulator exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{endpoint}/storage/v1/b", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gcp-storage-emulator not answering at {endpoint} within {timeout} s")


def start_object_store(directory: Path) -> Iterator[ObjectStore]:
    """The emulator (in memory, one bucket) and the token endpoint; stopped when the generator closes."""
    emulator = Path(sys.executable).parent / "gcp-storage-emulator"
    if not emulator.is_file():
        missing("gcp-storage-emulator is not installed (requirements-dev.txt)")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = directory / "emulator.log"
    requests: list[dict] = []
    with ExitStack() as stack:
        token_url = stack.enter_context(loopback_server(token_handler(requests))) + "/token"
        handle = stack.enter_context(open(log, "w", encoding="utf-8"))
        command = [str(emulator), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
                   "--default-bucket", BUCKET]  # fmt: skip
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        try:
            _wait(endpoint, process, log)
            yield ObjectStore(
                endpoint,
                BUCKET,
                _key_file(directory / "key.json", GOOD_KEY, token_url),
                _key_file(directory / "revoked-key.json", REVOKED_KEY, token_url),
                requests,
            )
        finally:
            process.terminate()
            process.wait(timeout=20)
