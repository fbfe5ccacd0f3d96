"""`make bench-soak`: one service with Redis under steady load at 80 % of its measured maximum.

On loopback, the service (`python -m mlops_template serve`, REDIS_URL on a redis-server of its own, the per-client
rate limit on with a limit no client reaches, leased from Redis as params.yaml's `shared_lease` says) pinned to
one core, the load generators to the other (Redis unpinned); `make bench-soak SOAK_FLAGS="--duration 10"` for a
short run:
  1. maximum: wrk, `--connections` connections flat out: the max req/s;
  2. unloaded: `--unloaded-load` x the maximum (5 %), the reference p99;
  3. soak: `--duration` seconds at `--load` x the maximum (80 %), the service's RSS sampled every second.
Phases 2 and 3 use the same open-loop generator (tools/open_loop.py: a constant rate over the same
`--connections`, latency from each request's due time, so a stall of the service counts for every request it
delays), so the two p99s are measured alike. The same three phases run against the bare FastAPI floor
(tools/bench_apps.py) for `--floor-seconds`: its ratio is what the framework and this machine give with no
service code at all. Reports errors (non-2xx), the soak p99 against the unloaded p99 and the RSS growth over the
soak (bounded state: the queue, drift window and feedback store must not grow without end). Writes
reports/bench-soak.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
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
    TOOLS,
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


def goals(values: dict[str, float | None]) -> list[dict[str, Any]]:
    out = []
    for key, (op, target, what) in GOALS.items():
        value = values.get(key)
        met = None if value is None else {"==": value == target, "<=": value <= target, "<": value < target}[op]
        out.append({"goal": key, "what": what, "value": value, "target": f"{op} {target:g}", "met": met})
    return out


def table(report: dict[str, Any]) -> str:
    lines = ["| server | phase | connections | req/s | p50 ms | p99 ms | max ms | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for server_name, phases in (("service + Redis", report["phases"]), ("floor", report["floor"]["phases"])):
        for name, r in phases.items():
            lines.append(f"| {server_name} | {name} | {r['connections']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | "
                         f"{r['p99_ms']:.2f} | {r['max_ms']:.2f} | {r['errors']} |")  # fmt: skip
    rss, floor = report["rss"], report["floor"]["ratios"]
    lines += ["", f"RSS over the soak: {rss['start_mb']:.1f} MB -> {rss['end_mb']:.1f} MB (max {rss['max_mb']:.1f} MB)",
              f"Floor (bare FastAPI, same phases): soak p99 / unloaded p99 = {floor['p99_vs_unloaded']}"]  # fmt: skip
    return "\n".join(lines + goals_table(report["goals"]))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60, help="soak seconds")
    parser.add_argument("--load", type=float, default=0.8, help="soak rate as a fraction of the measured maximum")
    parser.add_argument("--unloaded-load", type=float, default=0.05, help="the reference rate, a fraction too")
    parser.add_argument("--max-seconds", type=float, default=10, help="seconds of the maximum-rate measurement")
    parser.add_argument("--unloaded-seconds", type=float, default=20, help="seconds of the reference run")
    parser.add_argument("--floor-seconds", type=float, default=20, help="soak seconds of the floor's run")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds")
    parser.add_argument("--connections", type=int, default=8, help="connections of every phase")
    parser.add_argument("--rate-limit", choices=("on", "off"), default="on",
                        help="on: the Redis token bucket, leased (a limit no client reaches)")  # fmt: skip
    parser.add_argument("--server-cpu", type=int, default=0, help="core for the server (taskset)")
    parser.add_argument("--load-cpu", type=int, default=1, help="core for the load generators (taskset)")
    parser.add_argument("--report", type=Path, default=Path("reports/bench-soak.json"))
    args = parser.parse_args()
    check_tools(args, "bench-soak")
    return args


def phase(result: dict[str, Any], connections: int, **extra: Any) -> dict[str, Any]:
    keep = ("rps", "p50_ms", "p99_ms", "max_ms", "requests", "errors")
    return {"connections": connections, **{k: result[k] for k in keep}, **extra}


def open_loop(url: str, body_file: Path, rate: float, seconds: float, args: argparse.Namespace) -> dict[str, Any]:
    """tools/open_loop.py on the load core: `rate` requests per second over `args.connections` connections."""
    argv = [sys.executable, str(TOOLS / "open_loop.py"), url, str(body_file), f"{rate:.1f}", f"{seconds:g}",
            "--connections", str(args.connections)]  # fmt: skip
    result = subprocess.run(pinned(args.load_cpu, argv), capture_output=True, text=True, timeout=seconds + 120)
    if result.returncode != 0:
        raise RuntimeError(f"open_loop.py failed ({result.returncode}): {result.stderr[-3000:]}")
    return json.loads(result.stdout)


def phases(url: str, body_file: Path, args: argparse.Namespace, soak_seconds: float,
           pid: int) -> tuple[dict[str, dict[str, Any]], list[tuple[float, int]]]:  # fmt: skip
    """Maximum (wrk), unloaded and soak (open loop) against one server; RSS samples of `pid` over the soak."""
    wrk(url, body_file, args.warmup, args.connections, args.load_cpu)
    peak = wrk(url, body_file, args.max_seconds, args.connections, args.load_cpu)
    say(f"maximum: {peak['rps']:.0f} req/s at {args.connections} connections, p99 {peak['p99_ms']:.2f} ms")
    unloaded = open_loop(url, body_file, args.unloaded_load * peak["rps"], args.unloaded_seconds, args)
    say(f"unloaded: {unloaded['rps']:.0f} req/s, p99 {unloaded['p99_ms']:.2f} ms")
    target = args.load * peak["rps"]
    say(f"soak: {soak_seconds:g} s at {target:.0f} req/s ({args.connections} connections, open loop)")
    with sampling(pid) as samples:
        soak = open_loop(url, body_file, target, soak_seconds, args)
    say(f"soak: {soak['rps']:.0f} req/s, p99 {soak['p99_ms']:.2f} ms, {soak['errors']} errors")
    return {
        "maximum": phase(peak, args.connections),
        "unloaded": phase(unloaded, args.connections, target_rps=round(args.unloaded_load * peak["rps"], 1)),
        "soak": phase(soak, args.connections, target_rps=round(target, 1)),
    }, samples


def ratios(measured: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    unloaded, soak = measured["unloaded"], measured["soak"]
    return {
        "errors": soak["errors"],
        "p99_vs_unloaded": round(soak["p99_ms"] / unloaded["p99_ms"], 3) if unloaded["p99_ms"] else None,
        "achieved_load": round(soak["rps"] / measured["maximum"]["rps"], 3),
    }


def main() -> int:
    args = parse_args()
    from mlops_template.core.bundle import load_bundle
    from mlops_template.core.config import load_params
    from mlops_template.core.fsutil import write_text

    params = load_params()
    bundle = load_bundle(params.gate.bundle_dir)  # verified checksums, VALIDATED only
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        workdir = Path(tmp)
        body_file = workdir / "row.json"
        body_file.write_bytes(json.dumps(bundle.metadata.example).encode())
        with ExitStack() as stack:
            params_file = unreachable_limit(workdir)
            redis_url = stack.enter_context(redis_server(workdir))
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = {"HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1", "MODEL_DIR": str(bundle.path),
                   "REDIS_URL": redis_url, "PARAMS_FILE": str(params_file), "RATE_LIMIT": args.rate_limit}  # fmt: skip
            argv = pinned(args.server_cpu, [sys.executable, "-m", "mlops_template", "serve"])
            process = stack.enter_context(server("service", argv, env, f"{base}/ready", timeout=180))
            say(f"model {bundle.version}, Redis {redis_url}, rate limit {args.rate_limit}")
            measured, samples = phases(f"{base}/predict", body_file, args, args.duration, process.pid)
        with ExitStack() as stack:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            argv = pinned(args.server_cpu, [sys.executable, "-m", "uvicorn", "--app-dir", str(TOOLS), "--host",
                                            "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level",
                                            "warning", "bench_apps:floor"])  # fmt: skip
            process = stack.enter_context(server("floor", argv, {}, f"{base}/health"))
            say("floor (bare FastAPI): the same phases")
            floor, _ = phases(f"{base}/predict", body_file, args, args.floor_seconds, process.pid)
    start_rss, end_rss = samples[0][1], samples[-1][1]
    values = {**ratios(measured), "rss_growth_pct": round(100 * (end_rss - start_rss) / start_rss, 2)}
    report = {
        "command": "make bench-soak",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {
            "duration_s": args.duration,
            "load": args.load,
            "unloaded_load": args.unloaded_load,
            "max_seconds": args.max_seconds,
            "floor_seconds": args.floor_seconds,
            "rate_limit": args.rate_limit,
            "server_cpu": args.server_cpu,
            "load_cpu": args.load_cpu,
            "load_generator": "maximum: wrk -t1 (tools/bench_post.lua); unloaded and soak: tools/open_loop.py",
            "model_version": bundle.version,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "phases": measured,
        "rss": {
            "start_mb": round(start_rss / 2**20, 1),
            "end_mb": round(end_rss / 2**20, 1),
            "max_mb": round(max(b for _, b in samples) / 2**20, 1),
            "samples": [(t, round(b / 2**20, 1)) for t, b in samples],
        },
        "ratios": values,
        "floor": {"phases": floor, "ratios": ratios(floor)},
        "goals": goals(values),
    }
    write_text(args.report, json.dumps(report, indent=2) + "\n")
    print(table(report))
    say(f"written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
