"""Monitoring state shared by every process of the service through Redis (when REDIS_URL is set).

Several workers or replicas then act as one service: a prediction recorded by one process takes its feedback in
another, the live quality windows, the per-variant experiment counts, the A/B decision (frozen once made) and so
the bandit's posteriors are common, and the per-client rate limit holds across processes. The drift window stays
per process (README "Monitoring").

Cost on the hot path: none per /predict for monitoring state (the service's flush thread files its queue of
predictions, ROWS_PER_CALL rows per script call, off the event loop), one round trip per rate-limit lease (a Lua
token bucket that hands a process a share of the burst to spend locally; `shared_lease: 0`: one per request).
Faults: a Redis that does not answer makes every shared call fail fast for `RETRY_SECONDS` (StateUnavailable,
counted per operation in `model_shared_state_errors_total`): /predict keeps answering (updates are dropped, the rate
limit falls back to the process's own bucket), reads and admin routes answer 503, and the next call after the pause
tries Redis again. Redis restarted empty: scripts are reloaded by redis-py, predictions recorded before are unknown
(404).

Keys (one Redis database per service: pick it with the /N of REDIS_URL): `mlops:rate:<client>`,
`mlops:fb:<request id>` (hash: created, served variant, one field per variant's prediction),
`mlops:fb-order` (zset, bounds count and age), `mlops:fb-gone` + `mlops:fb-gone-order` (why an id left, bounded by
capacity), `mlops:win:<scope>` (list, the live quality window), `mlops:exp:<name>:<design>:<arms>` (hash: counts per
arm, running p-value and decision per challenger; another set of arms is another experiment),
`mlops:exp-config` (JSON: the last POST /experiment change, applied by every process at its next sync).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from mlops_template.core.config import ExperimentConfig, FeedbackConfig, RateLimitConfig
from mlops_template.monitoring.experiment import VARIANTS, Experiment
from mlops_template.monitoring.feedback import SERVED, FeedbackStore, Pending, StateUnavailable, gone_error
from mlops_template.monitoring.security import Decision, RateLimiter

log = logging.getLogger("mlops_template.serving")
PREFIX = "mlops"
TIMEOUT_SECONDS = 0.5  # Redis answers in well under a millisecond on a LAN: longer means it is not answering
# the rate-limit call runs on the event loop: a Redis that does not answer may hold it this long, once per
# RETRY_SECONDS; a timeout only means this process's own bucket decides
RATE_LIMIT_TIMEOUT_SECONDS = 0.1
LEASE_SECONDS = 1.0  # a rate-limit lease unspent by then goes back to the bucket: held tokens cannot pile up
ROWS_PER_CALL = 64  # predictions filed per script call: Redis is busy well under a millisecond with each
RETRY_SECONDS = 1.0  # after a failure no call tries Redis for this long (requests must not wait on a dead host)
OPERATIONS = ("rate_limit", "record", "feedback", "experiment")
RECONFIGURABLE = ("mode", "challenger_share", "name")  # what POST /experiment may change (routes.ExperimentChange)
T = TypeVar("T")

# Lua: one script per decision, atomic in Redis; times are the server's (processes' clocks may differ).
# ARGV: rate, burst, cost, lease, returned. Takes back `returned` tokens (what is left of this process's expired
# lease), then grants `lease` tokens (at least `cost`, at most what the bucket holds) when it holds `cost`: the
# process spends the rest locally (SharedRateLimiter), sparing a round trip per request.
TOKEN_BUCKET = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local lease = math.max(cost, tonumber(ARGV[4]))
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate + tonumber(ARGV[5]))
local granted = 0
if tokens >= cost then
  granted = math.min(lease, tokens)
  tokens = tokens - granted
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(1000 * burst / rate) + 1000)  -- full again by then: forget it
return {tostring(granted), tostring(tokens)}
"""
# KEYS: order, gone hash, gone order. `gone` remembers why ids left (the `capacity` most recent); `forget` deletes
# entries. Both take a list of ids and call Redis once per slice of SLICE ids (Lua's unpack has a stack limit).
_GONE = """
local SLICE = 1000
local function gone(ids, why, now, capacity)
  for s = 1, #ids, SLICE do
    local reasons, scores = {}, {}
    for i = s, math.min(s + SLICE - 1, #ids) do
      reasons[#reasons + 1] = ids[i]; reasons[#reasons + 1] = why
      scores[#scores + 1] = now; scores[#scores + 1] = ids[i]
    end
    redis.call('HSET', KEYS[2], unpack(reasons))
    redis.call('ZADD', KEYS[3], unpack(scores))
  end
  local extra = redis.call('ZCARD', KEYS[3]) - capacity
  if extra > 0 then
    local old = redis.call('ZPOPMIN', KEYS[3], extra)
    local names = {}
    for i = 1, #old, 2 do names[#names + 1] = old[i] end
    for s = 1, #names, SLICE do redis.call('HDEL', KEYS[2], unpack(names, s, math.min(s + SLICE - 1, #names))) end
  end
end
local function forget(ids, prefix)
  for s = 1, #ids, SLICE do
    local keys = {}
    for i = s, math.min(s + SLICE - 1, #ids) do keys[#keys + 1] = prefix .. ids[i] end
    redis.call('DEL', unpack(keys))
  end
end
"""
# KEYS: order, gone, gone order. ARGV: now, ttl, capacity, entry key prefix, variant, served, then id, created,
# prediction (JSON) per row. Rows are recorded, then entries past their TTL or over capacity leave (oldest first).
RECORD = (
    _GONE
    + """
local now, ttl, capacity, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local variant, served = ARGV[5], ARGV[6] == '1'
for i = 7, #ARGV, 3 do
  local id, created = ARGV[i], ARGV[i + 1]
  local key = prefix .. id
  redis.call('HSETNX', key, 'c', created)
  if served then redis.call('HSET', key, 's', variant) else redis.call('HSETNX', key, 's', variant) end
  redis.call('HSET', key, 'v:' .. variant, ARGV[i + 2])
  redis.call('EXPIREAT', key, math.ceil(tonumber(created) + ttl) + 60)  -- a safety net: the order zset rules
  redis.call('ZADD', KEYS[1], 'NX', created, id)
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - ttl, 'LIMIT', 0, 10000)
if #expired > 0 then
  for s = 1, #expired, SLICE do redis.call('ZREM', KEYS[1], unpack(expired, s, math.min(s + SLICE - 1, #expired))) end
  forget(expired, prefix)
  gone(expired, 'expired', now, capacity)
end
local extra = redis.call('ZCARD', KEYS[1]) - capacity
if extra > 0 then
  local old, ids = redis.call('ZPOPMIN', KEYS[1], extra), {}
  for i = 1, #old, 2 do ids[#ids + 1] = old[i] end
  forget(ids, prefix)
  gone(ids, 'evicted', now, capacity)
end
return redis.call('ZCARD', KEYS[1])
"""
)
# KEYS: order, gone, gone order, entry. ARGV: id, now, ttl, capacity. The entry, taken once, or why there is none.
TAKE = (
    _GONE
    + """
local id, now, ttl, capacity = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local entry = redis.call('HGETALL', KEYS[4])
if #entry == 0 then return {'gone', redis.call('HGET', KEYS[2], id) or ''} end
redis.call('DEL', KEYS[4])
redis.call('ZREM', KEYS[1], id)
local created = 0
for i = 1, #entry, 2 do if entry[i] == 'c' then created = tonumber(entry[i + 1]) end end
if now - created >= ttl then
  gone({id}, 'expired', now, capacity)
  return {'gone', 'expired'}
end
gone({id}, 'answered', now, capacity)
return {'ok', entry}
"""
)
# KEYS: the experiment hash. ARGV: variant, success (0/1). The counts after this outcome, atomically.
OBSERVE = """
redis.call('HINCRBY', KEYS[1], 'trials:' .. ARGV[1], 1)
redis.call('HINCRBY', KEYS[1], 'successes:' .. ARGV[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""
# KEYS: the experiment hash. ARGV: challenger, p-value, decision (JSON or '') per changed test. Per challenger the
# running minimum p-value; the first decision stays (a decision is frozen once made, whichever process made it).
SETTLE = """
for i = 1, #ARGV, 3 do
  local challenger = ARGV[i]
  local p = tonumber(redis.call('HGET', KEYS[1], 'p_value:' .. challenger) or '1')
  if tonumber(ARGV[i + 1]) < p then redis.call('HSET', KEYS[1], 'p_value:' .. challenger, ARGV[i + 1]) end
  if ARGV[i + 2] ~= '' then redis.call('HSETNX', KEYS[1], 'decided:' .. challenger, ARGV[i + 2]) end
end
return redis.call('HGETALL', KEYS[1])
"""


def _client(url: str, timeout: float, retries: int) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout,
                                retry=Retry(NoBackoff(), retries))  # fmt: skip


class Shared:
    """The Redis client (one connection pool), the key prefix and the breaker every shared piece goes through."""

    def __init__(self, url: str, clock: Callable[[], float] = time.monotonic) -> None:
        # retried once, at once: a connection left over from before a Redis restart fails the first time
        self.client = _client(url, TIMEOUT_SECONDS, retries=1)
        # the rate limiter's: short timeouts, no retry (its fallback, the process's bucket, is always there)
        self.fast = _client(url, RATE_LIMIT_TIMEOUT_SECONDS, retries=0)
        kwargs = self.client.connection_pool.connection_kwargs
        self.where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"  # never the password
        self.clock = clock
        self.errors = dict.fromkeys(OPERATIONS, 0)
        self._down_until = {"client": -math.inf, "fast": -math.inf}  # per client: one pause does not stop the other
        self._lock = threading.Lock()

    def key(self, *parts: str) -> str:
        return ":".join((PREFIX, *parts))

    def call(self, operation: str, action: Callable[[], T], lane: str = "client") -> T:
        """`action()` on Redis through `lane` (client or fast); StateUnavailable (counted) when it does not answer."""
        if self.clock() < self._down_until[lane]:
            self._count(operation)
            raise StateUnavailable(self._unavailable("did not answer a moment ago"))
        try:
            result = action()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            with self._lock:
                first = self._down_until[lane] < self.clock() - RETRY_SECONDS  # not an outage going on
                self._down_until[lane] = self.clock() + RETRY_SECONDS
            self._count(operation)
            if first:
                log.warning("shared state: Redis at %s unreachable (%s); retrying every %g s", self.where, exc,
                            RETRY_SECONDS)  # fmt: skip
            raise StateUnavailable(self._unavailable(f"did not answer ({exc})")) from None
        return result

    def _count(self, operation: str) -> None:
        with self._lock:
            self.errors[operation] += 1

    def _unavailable(self, what: str) -> str:
        return (f"shared monitoring state unavailable: Redis at {self.where} (REDIS_URL) {what}; "
                f"retry once it is back (tried again every {RETRY_SECONDS:g} s)")  # fmt: skip


class SharedRateLimiter:
    """The token bucket of security.RateLimiter in Redis: one limit for all processes.

    A process takes a lease of `shared_lease` x `burst` tokens in one Lua call and spends it locally for at most
    LEASE_SECONDS (then it goes back with the next call), so a busy client costs one round trip per lease instead of
    one per request. Tokens leave the shared bucket before they are spent: the limit is never exceeded by more than
    the leases processes hold, and a client spread over P processes may be refused up to P leases early.
    `shared_lease: 0` is exact (a round trip per request). While Redis does not answer, each process limits with
    its own bucket (counted as a `rate_limit` error).
    """

    def __init__(self, shared: Shared, config: RateLimitConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.shared, self.rate, self.burst = shared, config.requests_per_second, float(config.burst)
        self.lease, self.max_clients, self.clock = config.shared_lease * config.burst, config.max_clients, clock
        self.local = RateLimiter(config)
        self._held: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, expiry)
        self._lock = threading.Lock()
        self._script = shared.fast.register_script(TOKEN_BUCKET)

    def allow(self, client: str, cost: float = 1.0) -> Decision:
        now = self.clock()
        with self._lock:
            tokens, expiry = self._held.pop(client, (0.0, now))
            if tokens >= cost and now < expiry:
                self._held[client] = (tokens - cost, expiry)
                return Decision(True, 0.0)
        # what is left of an expired or too small lease goes back to the bucket with this call
        keys, args = [self.shared.key("rate", client)], [self.rate, self.burst, cost, self.lease, tokens]
        try:
            granted, left = self.shared.call("rate_limit", lambda: self._script(keys=keys, args=args), "fast")
        except StateUnavailable:
            return self.local.allow(client, cost)
        granted = float(granted)
        if granted < cost:
            return Decision(False, (cost - float(left)) / self.rate)
        if granted > cost:
            with self._lock:
                self._held[client] = (granted - cost, now + LEASE_SECONDS)
                while len(self._held) > self.max_clients:
                    self._held.popitem(last=False)
        return Decision(True, 0.0)


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


class SharedFeedbackStore(FeedbackStore):
    """FeedbackStore whose pending predictions, departed ids and live windows are in Redis (same bounds).

    Its clock is the wall clock: entries are created by one process and expired by another.
    """

    def __init__(self, shared: Shared, task: str, classes: Sequence[str] | None, config: FeedbackConfig,
                 arms: Sequence[str] = VARIANTS) -> None:  # fmt: skip
        super().__init__(task, classes, config, clock=time.time)
        self.shared, self.arms = shared, tuple(arms)
        self._order, self._gone_keys = shared.key("fb-order"), [shared.key("fb-gone"), shared.key("fb-gone-order")]
        self._record = shared.client.register_script(RECORD)
        self._take_script = shared.client.register_script(TAKE)

    def __len__(self) -> int:
        return int(self.shared.call("feedback", lambda: self.shared.client.zcard(self._order)))

    def record_groups(self, groups: Sequence[tuple[Any, ...]]) -> None:
        """Several `record_batch` argument tuples, ROWS_PER_CALL rows per script call.

        Redis runs one script at a time: short calls let every other client's commands (another process's
        rate-limit lease, a feedback) through in between instead of waiting for a whole flush.
        """
        for request_ids, predictions, proba, variant, served, created, *scores in groups:
            labels, values = self._labels_scores(predictions, proba, scores[0] if scores else None, len(request_ids))
            times = [self.clock()] * len(request_ids) if created is None else created
            for start in range(0, len(request_ids), ROWS_PER_CALL):
                stop = start + ROWS_PER_CALL
                self._record_slice(request_ids[start:stop], labels[start:stop], values[start:stop], times[start:stop],
                                   variant, served)  # fmt: skip

    def record_batch(self, request_ids: Sequence[str], predictions: Sequence[Any], proba: Any | None = None,
                     variant: str = "champion", served: bool = True, created: Sequence[float] | None = None,
                     scores: Sequence[float | None] | None = None) -> None:  # fmt: skip
        self.record_groups([(request_ids, predictions, proba, variant, served, created, scores)])

    def _record_slice(self, request_ids: Sequence[str], labels: Sequence[Any], scores: Sequence[float | None],
                      times: Sequence[float], variant: str, served: bool) -> None:  # fmt: skip
        now = self.clock()
        rows = [
            value
            for request_id, label, score, at in zip(request_ids, labels, scores, times, strict=True)
            for value in (request_id, repr(float(at)), _json([label, score]))
        ]
        args = [repr(now), self.config.ttl_seconds, self.config.capacity, self.shared.key("fb", ""), variant,
                int(served), *rows]  # fmt: skip
        keys = [self._order, *self._gone_keys]
        self.shared.call("record", lambda: self._record(keys=keys, args=args))

    def _take(self, request_id: str) -> Pending:
        keys = [self._order, *self._gone_keys, self.shared.key("fb", request_id)]
        args = [request_id, repr(self.clock()), self.config.ttl_seconds, self.config.capacity]
        status, found = self.shared.call("feedback", lambda: self._take_script(keys=keys, args=args))
        if status == "gone":
            raise gone_error(request_id, self.reason(found) if found else None)
        fields = dict(zip(found[::2], found[1::2], strict=True))
        predictions = [(name[2:], *orjson.loads(value)) for name, value in fields.items() if name.startswith("v:")]
        return (float(fields["c"]), fields["s"], *(value for row in predictions for value in row))

    def _add_outcomes(self, added: Sequence[tuple[str, bool, float | None, bool, float | None]]) -> None:
        pipe = self.shared.client.pipeline(transaction=False)
        for scope, *outcome in added:
            key = self.shared.key("win", scope)
            pipe.lpush(key, _json(outcome))
            pipe.ltrim(key, 0, self.config.window_size - 1)
        self.shared.call("feedback", pipe.execute)

    def _window(self, scope: str) -> tuple[int, list[np.ndarray] | None]:
        raw = self.shared.call("feedback", lambda: self.shared.client.lrange(self.shared.key("win", scope), 0, -1))
        if not raw:
            return 0, None
        rows = [orjson.loads(r) for r in raw]
        success, score, truth, error = zip(*rows, strict=True)
        return len(rows), [np.array(success, dtype=bool), np.array(score, dtype=float),
                           np.array(truth, dtype=bool), np.array(error, dtype=float)]  # fmt: skip

    def scopes(self) -> list[str]:
        return sorted(s for s in (SERVED, *self.arms) if self._window(s)[0])


class SharedExperiment(Experiment):
    """Experiment whose per-variant counts, A/B outcomes, running p-value and decision live in Redis.

    Routing stays local (no round trip per request): the request counts are sent at each `sync` (the service's
    flush), and the bandit draws from the shared outcome counts as of the last sync or feedback of this process.
    A `reconfigure` (POST /experiment) is stored in Redis and taken up by every process at its next sync (within
    `feedback.flush_seconds`; a GET /experiment syncs first); a process that starts later takes it up too, so it
    outlives restarts until the next change (or until Redis is emptied: then each process keeps what it has).
    """

    def __init__(self, shared: Shared, config: ExperimentConfig, challengers: Sequence[str] = ()) -> None:
        super().__init__(config, challengers)
        self.shared = shared
        self._shared_counts = {v: {"requests": 0, "shadow": 0} for v in self.arms}
        self._observe = shared.client.register_script(OBSERVE)
        self._settle = shared.client.register_script(SETTLE)

    def _config_key(self) -> str:
        return self.shared.key("exp-config")

    def reconfigure(self, **changes: Any) -> None:
        """Validate, store in Redis for every process (StateUnavailable if it does not answer), apply here."""
        with self._lock:
            config = ExperimentConfig.model_validate({**self.config.model_dump(), **changes})
        stored = _json({name: getattr(config, name) for name in RECONFIGURABLE})
        self.shared.call("experiment", lambda: self.shared.client.set(self._config_key(), stored))
        super().reconfigure(**orjson.loads(stored))

    def _adopt(self, stored: str | None) -> bool:
        """Apply the shared configuration if it differs from this process's; True when the A/B key changed."""
        if not stored:
            return False
        changes = orjson.loads(stored)
        with self._lock:
            current = {name: getattr(self.config, name) for name in RECONFIGURABLE}
            before = self._key()
        if changes == current:
            return False
        super().reconfigure(**changes)
        with self._lock:
            return self._key() != before

    def _key(self) -> str:
        c = self.config
        return self.shared.key("exp", c.name, f"{c.test}-{c.alpha:g}-{c.min_detectable_effect:g}", ",".join(self.arms))

    def _load(self, flat: Sequence[str] | dict[str, str]) -> None:
        """This process's copy of the shared state (call under the lock)."""
        fields = flat if isinstance(flat, dict) else dict(zip(flat[::2], flat[1::2], strict=True))
        for v in self.arms:
            self.trials[v], self.successes[v] = int(fields.get(f"trials:{v}", 0)), int(fields.get(f"successes:{v}", 0))
            self._shared_counts[v] = {k: int(fields.get(f"{k}:{v}", 0)) for k in ("requests", "shadow")}
        for c, test in self._tests.items():
            test.p_value = float(fields.get(f"p_value:{c}", 1.0))
            test.decided = orjson.loads(fields[f"decided:{c}"]) if f"decided:{c}" in fields else None

    def sync(self) -> None:
        """Send this process's request counts, then read the shared state (one pipeline)."""
        with self._lock:
            sent = {v: dict(c) for v, c in self._counts.items()}
            for c in self._counts.values():
                c.update(requests=0, shadow=0)
            key = self._key()
        pipe = self.shared.client.pipeline(transaction=False)
        for v, counts in sent.items():
            for name, n in counts.items():
                if n:
                    pipe.hincrby(key, f"{name}:{v}", n)
        pipe.get(self._config_key())
        pipe.hgetall(key)
        try:
            *_, stored, fields = self.shared.call("experiment", pipe.execute)
        except StateUnavailable:
            with self._lock:  # kept (a few integers) and sent with the next sync
                for v, counts in sent.items():
                    for name, n in counts.items():
                        self._counts[v][name] += n
            raise
        if self._adopt(stored):  # another process changed the experiment's name: read the new one's state
            key = self._key()
            fields = self.shared.call("experiment", lambda: self.shared.client.hgetall(key))
        with self._lock:
            if key == self._key():
                self._load(fields)

    def observe(self, variant: str, success: bool) -> None:
        self._check(variant)
        key = self._key()
        fields = self.shared.call("experiment", lambda: self._observe(keys=[key], args=[variant, int(success)]))
        changed: list[str] = []
        with self._lock:
            self._load(fields)
            for test in self._affected(variant):
                before = (test.p_value, test.decided)
                if test.decided is None:
                    test.update()
                if (test.p_value, test.decided) != before:
                    decided = _json(test.decided) if test.decided is not None else ""
                    changed += [test.challenger, repr(test.p_value), decided]
        if changed:
            fields = self.shared.call("experiment", lambda: self._settle(keys=[key], args=changed))
            with self._lock:
                self._load(fields)

    def _totals(self) -> dict[str, dict[str, int]]:
        return {v: {k: self._shared_counts[v][k] + self._counts[v][k] for k in c} for v, c in self._counts.items()}

    def stats(self) -> dict[str, Any]:
        self.sync()
        return super().stats()


@dataclass(frozen=True)
class Flusher:
    """The thread that files a process's queued predictions into Redis: `wake()` files now, `stop()` ends it."""

    wake: Callable[[], None]
    stop: Callable[[], None]


def flush_every(seconds: float, flush: Callable[[], None]) -> Flusher:
    """Call `flush` in a daemon thread every `seconds` (a quiet process's predictions reach Redis anyway) and
    whenever woken (a full queue: the request that filled it does not wait for Redis, nor does the event loop)."""
    woken, stopped = threading.Event(), threading.Event()

    def loop() -> None:
        while True:
            woken.wait(seconds)
            if stopped.is_set():
                return
            woken.clear()
            try:
                flush()
            except StateUnavailable:
                pass  # counted; the predictions of this flush are dropped
            except Exception:
                log.exception("periodic flush of the monitoring state failed")

    def stop() -> None:
        stopped.set()
        woken.set()

    threading.Thread(target=loop, name="shared-state-flush", daemon=True).start()
    return Flusher(woken.set, stop)
