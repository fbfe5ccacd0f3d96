"""API keys (admin and /predict; constant-time check) and a per-client token-bucket rate limiter (bounded memory)."""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mlops_template.core.config import RateLimitConfig

API_KEYS_VARIABLE = "ADMIN_API_KEYS"
PREDICT_KEYS_VARIABLE = "PREDICT_API_KEYS"
OK, MISSING, INVALID, DISABLED = "ok", "missing", "invalid", "disabled"
# HTTP status per outcome: 401 asks for credentials, 403 refuses the given ones, 503 = not configured
STATUS = {OK: 200, MISSING: 401, INVALID: 403, DISABLED: 503}


def _digest(key: str) -> bytes:
    # comparing fixed-length digests: compare_digest leaks the length of its inputs, not their content
    return hashlib.sha256(key.encode()).digest()


def fingerprint(key: str) -> str:
    """A short, stable name for a key (its rate-limit bucket): 64 bits of its sha256, never the key itself."""
    return _digest(key).hex()[:16]


@dataclass(frozen=True)
class ApiKeys:
    """API keys (only their sha256 digests are held: a memory dump or repr shows no key)."""

    digests: tuple[bytes, ...]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, variable: str = API_KEYS_VARIABLE) -> ApiKeys:
        """Keys from a comma-separated environment variable; blanks ignored; none = admin routes disabled."""
        return cls.parse((os.environ if environ is None else environ).get(variable, ""))

    @classmethod
    def parse(cls, raw: str) -> ApiKeys:
        """Keys from a comma-separated list; blanks ignored."""
        return cls(tuple(_digest(k.strip()) for k in raw.split(",") if k.strip()))

    def __add__(self, other: ApiKeys) -> ApiKeys:
        return ApiKeys(self.digests + other.digests)

    def check(self, presented: str | None) -> str:
        """OK, MISSING (401), INVALID (403) or DISABLED (503, no key configured); constant time per key."""
        if not self.digests:
            return DISABLED
        if not presented:
            return MISSING
        candidate = _digest(presented)
        # no early exit: every configured key is compared, so timing does not tell which one matched
        matched = False
        for digest in self.digests:
            matched |= hmac.compare_digest(candidate, digest)
        return OK if matched else INVALID

    def __repr__(self) -> str:
        return f"ApiKeys({len(self.digests)} key(s))"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until one token is available (0 when allowed)

    @property
    def retry_after_header(self) -> str:
        """Retry-After takes whole seconds: round up so a client that waits is let through."""
        return str(max(1, math.ceil(self.retry_after)))


class RateLimiter:
    """Token bucket per client: `burst` requests at once, refilled at `requests_per_second`.

    At most `max_clients` buckets are kept; the least recently seen client is forgotten first (it
    comes back with a full bucket, which only errs on the side of letting a quiet client through).
    """

    def __init__(self, config: RateLimitConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.max_clients = config.requests_per_second, float(config.burst), config.max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, last update)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, client: str, cost: float = 1.0) -> Decision:
        """Take `cost` tokens from the client's bucket if it has them."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            allowed = tokens >= cost
            if allowed:
                tokens -= cost
            self._buckets[client] = (tokens, now)  # re-inserted last: the most recently seen
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return Decision(allowed, 0.0 if allowed else (cost - tokens) / self.rate)
