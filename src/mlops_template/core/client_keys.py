"""The API key a client of the service sends (UI, smoke test, tools), from its own environment.

`PREDICT_API_KEY` goes with POST /predict (one of the service's PREDICT_API_KEYS), `ADMIN_API_KEY` with everything
else (one of ADMIN_API_KEYS: admin routes, and /model, /experiment, /monitoring/drift under PROTECT_METADATA); an
admin key also opens /predict, so a client with the admin key alone needs nothing more. Unset: no header is sent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

HEADER = "X-API-Key"
PREDICT_KEY_VARIABLE, ADMIN_KEY_VARIABLE = "PREDICT_API_KEY", "ADMIN_API_KEY"


def key_headers(path: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """{X-API-Key: key} for a request to `path` (a path or URL), or {} when this client has no key for it."""
    env = os.environ if environ is None else environ
    admin = env.get(ADMIN_KEY_VARIABLE, "").strip()
    key = (env.get(PREDICT_KEY_VARIABLE, "").strip() or admin) if path.rstrip("/").endswith("/predict") else admin
    return {HEADER: key} if key else {}
