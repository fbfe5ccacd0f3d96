-- wrk script for `make bench-serve`: POST the JSON file named by $BENCH_BODY on every request, and print
-- exact latency percentiles as one JSON line when done (parsed by tools/bench_serve.py).
local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
-- a service with PREDICT_API_KEYS wants a key (PREDICT_API_KEY, else ADMIN_API_KEY, as core/client_keys.py)
local key = os.getenv("PREDICT_API_KEY")
if not key or key == "" then key = os.getenv("ADMIN_API_KEY") end
if key and key ~= "" then wrk.headers["X-API-Key"] = key end

-- `make bench-soak`: a pause (ms) before each request of a connection paces the load below the maximum
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if pause > 0 then
  function delay()
    return pause
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"mean_us": %.1f, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
