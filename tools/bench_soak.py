"""`make bench-soak`: one service with Redis under steady load at 80 % of its measured maximum.

On loopback, the service (`python -m mlops_template serve`, REDIS_URL on a redis-server of its own, the per-client
rate limit on with a limit no client reaches, leased from Redis as params.yaml's `shared_lease` says) pinned to
one core, wrk to the other (Redis unpinned); `make bench-soak SOAK_FLAGS="--duration 10"` for a short run:
  1. unloaded: one connection, back to back: the reference p99;
  2. maximum: `--connections` connections flat out: the max req/s;
  3. soak: `--duration` seconds paced at `--load` x the maximum (wrk's per-connection pause, calibrated on a
     short run), the service's RSS sampled every second.
Reports errors (non-2xx, timeouts, socket errors), the soak p99 against the unloaded p99 and the RSS growth
over the soak (bounded state: the queue, drift window and feedback store must not grow without end). Writes
reports/bench-soak.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import (  # tools/: no package
    check_tools,
    free_port,
    goals_table,
    pinned,
    redis_server,
    server,
    unreachable_limit,
    wrk,
)

GOALS = {  # the targets, reported (not asserted): met or not
    "errors": ("==", 0, "failed requests during the soak"),
    "p99_vs_unloaded": ("<=", 2.0, "soak p99 / unloaded p99"),
    "rss_growth_pct": ("<", 10.0, "RSS growth over the soak (%)"),
}
PACING_FLOOR_S = 0.01  # per-connection period at least this long: wrk's pause is whole milliseconds


def say(message: str) -> None:
    print(f"bench-soak: {message}", file=sys.stderr, flush=True)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@contextmanager
def sampling(pid: int, every: float = 1.0) -> Iterator[list[tuple[float, int]]]:
    """RSS samples (seconds since start, bytes) taken in a thread while the block runs."""
    samples: list[tuple[float, int]] = []
    stop, start = threading.Event(), time.monotonic()

    def loop() -> None:
        while True:
            samples.append((round(time.monotonic() - start, 2), rss_bytes(pid)))
            if stop.wait(every):
                return

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
        samples.append((round(time.monotonic() - start, 2), rss_bytes(pid)))


def pace(target_rps: float, connections: int, latency_ms: float) -> int:
    """wrk's per-connection pause (ms) so that `connections` together send about `target_rps`."""
    return max(0, round(connections * 1000 / target_rps - latency_ms))


def goals(values: dict[str, float | None]) -> list[dict[str, Any]]:
    out = []
    for key, (op, target, what) in GOALS.items():
        value = values.get(key)
        met = None if value is None else {"==": value == target, "<=": value <= target, "<": value < target}[op]
        out.append({"goal": key, "what": what, "value": value, "target": f"{op} {target:g}", "met": met})
    return out


def table(report: dict[str, Any]) -> str:
    lines = ["| phase | connections | req/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in report["phases"].items():
        lines.append(f"| {name} | {r['connections']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['errors']} |")  # fmt: skip
    rss = report["rss"]
    lines += ["", f"RSS over the soak: {rss['start_mb']:.1f} MB -> {rss['end_mb']:.1f} MB (max {rss['max_mb']:.1f} MB)"]
    return "\n".join(lines + goals_table(report["goals"]))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60, help="soak seconds")
    parser.add_argument("--load", type=float, default=0.8, help="soak rate as a fraction of the measured maximum")
    parser.add_argument("--max-seconds", type=float, default=10, help="seconds of the maximum-rate measurement")
    parser.add_argument("--unloaded-seconds", type=float, default=5, help="seconds of the one-connection run")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds")
    parser.add_argument("--connections", type=int, default=8, help="connections of the maximum-rate run")
    parser.add_argument("--rate-limit", choices=("on", "off"), default="on",
                        help="on: the Redis token bucket, leased (a limit no client reaches)")  # fmt: skip
    parser.add_argument("--server-cpu", type=int, default=0, help="core for the service and Redis (taskset)")
    parser.add_argument("--load-cpu", type=int, default=1, help="core for wrk (taskset)")
    parser.add_argument("--report", type=Path, default=Path("reports/bench-soak.json"))
    args = parser.parse_args()
    check_tools(args, "bench-soak")
    return args


def phase(result: dict[str, Any], connections: int, **extra: Any) -> dict[str, Any]:
    keep = ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "requests", "errors")
    return {"connections": connections, **{k: result[k] for k in keep}, **extra}


def main() -> int:
    args = parse_args()
    from mlops_template.core.bundle import load_bundle
    from mlops_template.core.config import load_params
    from mlops_template.core.fsutil import write_text

    params = load_params()
    bundle = load_bundle(params.gate.bundle_dir)  # verified checksums, VALIDATED only
    body = json.dumps(bundle.metadata.example).encode()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        body_file = workdir / "row.json"
        body_file.write_bytes(body)
        params_file = unreachable_limit(workdir)
        redis_url = stack.enter_context(redis_server(workdir))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {"HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1", "MODEL_DIR": str(bundle.path),
               "REDIS_URL": redis_url, "PARAMS_FILE": str(params_file), "RATE_LIMIT": args.rate_limit}  # fmt: skip
        argv = pinned(args.server_cpu, [sys.executable, "-m", "mlops_template", "serve"])
        process = stack.enter_context(server("service", argv, env, f"{base}/ready", timeout=180))
        url = f"{base}/predict"
        say(f"model {bundle.version}, Redis {redis_url}, rate limit {args.rate_limit}; warm-up {args.warmup:g} s")
        wrk(url, body_file, args.warmup, args.connections, args.load_cpu)
        unloaded = wrk(url, body_file, args.unloaded_seconds, 1, args.load_cpu)
        say(f"unloaded: {unloaded['rps']:.0f} req/s, p99 {unloaded['p99_ms']:.2f} ms")
        peak = wrk(url, body_file, args.max_seconds, args.connections, args.load_cpu)
        say(f"maximum: {peak['rps']:.0f} req/s at {args.connections} connections, p99 {peak['p99_ms']:.2f} ms")
        target = args.load * peak["rps"]
        # enough connections that each waits >= PACING_FLOOR_S between requests (wrk's pause is whole ms)
        connections = max(args.connections, math.ceil(target * PACING_FLOOR_S))
        delay = pace(target, connections, unloaded["p50_ms"])
        trial = wrk(url, body_file, 3, connections, args.load_cpu, delay)
        delay = max(0, round(delay + connections * 1000 / target - connections * 1000 / max(trial["rps"], 1)))
        say(f"soak: {args.duration:g} s at ~{target:.0f} req/s ({connections} connections, {delay} ms pause each)")
        with sampling(process.pid) as samples:
            soak = wrk(url, body_file, args.duration, connections, args.load_cpu, delay)
        say(f"soak: {soak['rps']:.0f} req/s, p99 {soak['p99_ms']:.2f} ms, {soak['errors']} errors")
    start_rss, end_rss = samples[0][1], samples[-1][1]
    values = {
        "errors": soak["errors"],
        "p99_vs_unloaded": round(soak["p99_ms"] / unloaded["p99_ms"], 3) if unloaded["p99_ms"] else None,
        "rss_growth_pct": round(100 * (end_rss - start_rss) / start_rss, 2),
        "achieved_load": round(soak["rps"] / peak["rps"], 3),
    }
    report = {
        "command": "make bench-soak",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {
            "duration_s": args.duration,
            "load": args.load,
            "max_seconds": args.max_seconds,
            "rate_limit": args.rate_limit,
            "server_cpu": args.server_cpu,
            "load_cpu": args.load_cpu,
            "load_generator": "wrk -t1 (tools/bench_post.lua, paced with a per-connection pause)",
            "model_version": bundle.version,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "phases": {
            "unloaded": phase(unloaded, 1),
            "maximum": phase(peak, args.connections),
            "soak": phase(soak, connections, target_rps=round(target, 1), pause_ms=delay),
        },
        "rss": {
            "start_mb": round(start_rss / 2**20, 1),
            "end_mb": round(end_rss / 2**20, 1),
            "max_mb": round(max(b for _, b in samples) / 2**20, 1),
            "samples": [(t, round(b / 2**20, 1)) for t, b in samples],
        },
        "ratios": values,
        "goals": goals(values),
    }
    write_text(args.report, json.dumps(report, indent=2) + "\n")
    print(table(report))
    say(f"written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
