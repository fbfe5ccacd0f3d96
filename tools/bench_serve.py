"""`make bench-serve`: the prediction service against its floor and the usual alternatives, in one run.

On loopback, every server with the same worker count pinned to one core, wrk pinned to the other, a warm-up
then a bounded measurement each:
  floor            a bare FastAPI endpoint taking the same body (tools/bench_apps.py: floor)
  service          our /predict (`python -m mlops_template serve`), one row, then 1,000-row batches
  baseline         a plain FastAPI + pandas + scikit-learn app (tools/bench_apps.py: baseline_app)
  service+Redis    the same with REDIS_URL (a redis-server of its own): rate limit off, then on (a limit no client
                   reaches: leases of params.yaml's `shared_lease`, then exact, one Redis call per request);
                   `--skip-redis` leaves them out
  mlflow           `mlflow models serve --env-manager local` of the bundle's MLflow Model: the very artifact the
                   pipeline logs to MLflow (`python -m mlops_template mlflow-model`; mlflow is in requirements-dev)
plus the pipeline's predict_proba in-process on the same batch rows. Writes reports/bench-serve.json
(req/s, p50/p99, ratios, goals met or not) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_template.core.client_keys import key_headers

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
LUA = TOOLS / "bench_post.lua"
FLOOR, SERVICE, SERVICE_BATCH = "floor (bare FastAPI)", "service /predict", "service /predict batch"
REDIS, REDIS_LIMITED = "service /predict, Redis", "service /predict, Redis + rate limit"
REDIS_EXACT = "service /predict, Redis + exact rate limit (shared_lease 0)"
BASELINE, BASELINE_BATCH = "baseline FastAPI+pandas", "baseline FastAPI+pandas batch"
MLFLOW, MLFLOW_BATCH = "mlflow models serve", "mlflow models serve batch"
GOALS = {  # the targets, reported (not asserted): met or not
    "service_vs_floor": (">=", 0.70, "single-row /predict req/s vs the bare FastAPI floor"),
    "service_vs_mlflow": (">=", 10.0, "single-row /predict req/s vs mlflow models serve"),
    "service_p99_ms": ("<", 10.0, "single-row /predict p99 latency (ms) at the benchmark's connections"),
    "redis_vs_floor": (">=", 0.70, "single-row /predict req/s with REDIS_URL (rate limit off) vs the floor"),
    "redis_limited_vs_floor": (">=", 0.70, "the same with the Redis rate limit on (one round trip per lease)"),
    "redis_limited_p99_ms": ("<", 10.0, "single-row /predict p99 (ms) with Redis and its rate limit"),
    "batch_vs_in_process": (">=", 0.30, "batch rows/s over HTTP vs predict_proba in-process on the same rows"),
}


def say(message: str) -> None:
    print(f"bench-serve: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else argv


def http(method: str, url: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, str]:
    headers = {"Content-Type": "application/json", **key_headers(url)}  # keys from the environment, if any
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contextmanager
def server(
    name: str, argv: list[str], env: dict[str, str], ready_url: str, timeout: float = 120
) -> Iterator[subprocess.Popen]:
    """Start a server in its own process group, wait for `ready_url` to answer 200, always stop it."""
    log = tempfile.NamedTemporaryFile("w+", prefix=f"bench-{name}-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{Path(log.name).read_text()[-3000:]}")
            try:
                if http("GET", ready_url, timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready in {timeout} s:\n{Path(log.name).read_text()[-3000:]}")
            time.sleep(0.3)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
        Path(log.name).unlink(missing_ok=True)


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A redis-server on a free loopback port without persistence; yields its URL."""
    binary = shutil.which("redis-server")
    if not binary:
        sys.exit("redis-server not found: make system-deps (Debian package redis-server)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(directory), "--logfile", str(directory / "redis.log")]  # fmt: skip
    process = subprocess.Popen(argv)
    try:
        import redis

        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=port, socket_timeout=1).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"redis-server did not answer on port {port}") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=20)


def unreachable_limit(workdir: Path, **overrides: float) -> Path:
    """params.yaml with a per-client rate limit no load generator reaches: the limiter runs, never refuses."""
    import yaml

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    unreachable = {"enabled": True, "requests_per_second": 1e9, "burst": 1_000_000_000, **overrides}
    raw.setdefault("monitoring", {})["rate_limit"] = {**raw["monitoring"].get("rate_limit", {}), **unreachable}
    path = workdir / f"params{len(overrides)}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def wrk(
    url: str, body_file: Path, seconds: float, connections: int, cpu: int | None, delay_ms: int = 0
) -> dict[str, Any]:
    """wrk with tools/bench_post.lua; `delay_ms` paces each connection (a pause before each request)."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(LUA), url]
    result = subprocess.run(
        pinned(cpu, argv),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        env={**os.environ, "BENCH_BODY": str(body_file), "BENCH_DELAY_MS": str(delay_ms)},
    )
    found = re.search(r"^BENCH_JSON (.*)$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    raw = json.loads(found.group(1))
    return {
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "requests": raw["requests"],
        "errors": sum(raw["errors"].values()),
    }


@dataclass
class Scenario:
    label: str
    url: str
    body: bytes
    rows: int
    body_file: Path | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def prepare(scenario: Scenario, args: argparse.Namespace, workdir: Path) -> None:
    """Check one request answers 200, then warm up; a failing endpoint is reported, not benchmarked."""
    status, text = http("POST", scenario.url, scenario.body)
    if status != 200:
        say(f"{scenario.label}: HTTP {status} on the first request, not benchmarked: {text[:300]}")
        scenario.error = f"HTTP {status}: {text[:500]}"
        return
    scenario.body_file = workdir / (re.sub(r"\W+", "-", scenario.label) + ".json")
    scenario.body_file.write_bytes(scenario.body)
    wrk(scenario.url, scenario.body_file, args.warmup, args.connections, args.load_cpu)


def summary(scenario: Scenario) -> dict[str, Any]:
    """Medians over the rounds (robust to a neighbour's burst on a shared machine), with the spread."""
    if scenario.error or not scenario.rounds:
        return {"error": scenario.error or "not measured", "rows_per_request": scenario.rows}
    out: dict[str, Any] = {
        key: round(statistics.median(r[key] for r in scenario.rounds), 3)
        for key in ("rps", "p50_ms", "p90_ms", "p99_ms")
    }
    out |= {
        "rps_min": min(r["rps"] for r in scenario.rounds),
        "rps_max": max(r["rps"] for r in scenario.rounds),
        "max_ms": max(r["max_ms"] for r in scenario.rounds),
        "requests": sum(r["requests"] for r in scenario.rounds),
        "errors": sum(r["errors"] for r in scenario.rounds),
        "rows_per_request": scenario.rows,
        "rows_per_s": round(out["rps"] * scenario.rows, 1),
    }
    return out


def save_mlflow_model(bundle_dir: Path, destination: Path) -> None:
    """The bundle as the MLflow Model the pipeline logs (sklearn flavour, signature, bundle inside)."""
    argv = [sys.executable, "-m", "mlops_template", "mlflow-model", "--bundle", str(bundle_dir)]
    subprocess.run([*argv, "--output", str(destination)], check=True, capture_output=True, text=True, timeout=300)


def in_process(model: Any, frame: Any, seconds: float, cpu: int | None) -> dict[str, Any]:
    """predict_proba (or predict) on the batch frame, on the servers' core: the best case without HTTP."""
    before = os.sched_getaffinity(0)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    predict = model.predict_proba if hasattr(model, "predict_proba") else model.predict
    try:
        predict(frame)
        times = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline or len(times) < 5:
            started = time.perf_counter()
            predict(frame)
            times.append(time.perf_counter() - started)
    finally:
        os.sched_setaffinity(0, before)
    median = sorted(times)[len(times) // 2]
    return {
        "rows": len(frame),
        "calls": len(times),
        "median_ms": round(median * 1000, 3),
        "rows_per_s": round(len(frame) / median, 1),
    }


def records(frame: Any) -> list[dict[str, Any]]:
    """JSON-ready rows: NaN becomes null, numpy scalars become Python numbers."""
    clean = frame.astype(object).where(frame.notna(), None)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in clean.to_dict("records")]


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def goals(values: dict[str, float | None]) -> list[dict[str, Any]]:
    out = []
    for key, (op, target, what) in GOALS.items():
        value = values.get(key)
        met = None if value is None else (value >= target if op == ">=" else value < target)
        out.append({"goal": key, "what": what, "value": value, "target": f"{op} {target:g}", "met": met})
    return out


def table(report: dict[str, Any]) -> str:
    lines = [
        "| scenario | rows/request | req/s (median) | req/s range over rounds | rows/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["scenarios"].items():
        if "error" in r:
            reason = " ".join(r["error"].split())[:80]
            lines.append(f"| {name} | {r['rows_per_request']} | failed: {reason} | | | | | |")
            continue
        lines.append(
            f"| {name} | {r['rows_per_request']} | {r['rps']:,.0f} | {r['rps_min']:,.0f}–{r['rps_max']:,.0f} | "
            f"{r['rows_per_s']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |"
        )
    inproc = report["in_process"]
    lines.append(
        f"| in-process predict_proba (sklearn, same rows) | {inproc['rows']} | | | {inproc['rows_per_s']:,.0f} | "
        f"{inproc['median_ms']:.2f} (median call) | | |"
    )
    return "\n".join(lines + goals_table(report["goals"]))


def goals_table(goals: list[dict[str, Any]]) -> list[str]:
    """The goals as Markdown rows (bench-serve and bench-soak)."""
    lines = ["", "| goal | value | target | met |", "|---|---:|---|---|"]
    for g in goals:
        value = "n/a" if g["value"] is None else f"{g['value']:g}"
        lines.append(f"| {g['what']} | {value} | {g['target']} | {({True: 'yes', False: 'NO'}).get(g['met'], 'n/a')} |")
    return lines


def check_tools(args: argparse.Namespace, name: str) -> None:
    """wrk must exist; without 2 cores and taskset the run is unpinned (and says so)."""
    if not shutil.which("wrk"):
        sys.exit(f"{name}: wrk not found: make system-deps (Debian package wrk)")
    if not shutil.which("taskset") or len(os.sched_getaffinity(0)) < 2:
        say("fewer than 2 cores or no taskset: running unpinned (numbers are noisier)")
        args.server_cpu = args.load_cpu = None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="measured seconds per scenario (all rounds)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds per scenario")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the duration is split into")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    parser.add_argument("--batch-rows", type=int, default=1000, help="rows per batch request")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))
    parser.add_argument("--server-cpu", type=int, default=0, help="core for the servers (taskset)")
    parser.add_argument("--load-cpu", type=int, default=1, help="core for wrk (taskset)")
    parser.add_argument("--skip-mlflow", action="store_true", help="leave `mlflow models serve` out")
    parser.add_argument("--skip-redis", action="store_true", help="leave the service-with-Redis scenarios out")
    parser.add_argument("--report", type=Path, default=Path("reports/bench-serve.json"))
    args = parser.parse_args()
    check_tools(args, "bench-serve")
    return args


def main() -> int:
    args = parse_args()
    import pandas as pd

    from mlops_template.core.bundle import load_bundle
    from mlops_template.core.config import load_params
    from mlops_template.core.fsutil import write_text
    from mlops_template.pipeline.prep import load_prepared

    params = load_params()
    bundle = load_bundle(params.gate.bundle_dir)  # verified checksums, VALIDATED only
    features = bundle.metadata.feature_names
    test, _, _ = load_prepared(params.prep.output_dir, "test")
    batch = test[features].sample(n=args.batch_rows, replace=len(test) < args.batch_rows, random_state=0)
    single = bundle.metadata.example
    rows = args.batch_rows
    batch_records = records(batch)
    batch_body = json.dumps(batch_records).encode()
    mlflow_batch = json.dumps({"dataframe_records": batch_records}).encode()
    mlflow_single = json.dumps({"dataframe_records": [single]}).encode()
    single = json.dumps(single).encode()
    workers = str(args.workers)
    python = [sys.executable]
    uvicorn = [
        *python,
        "-m",
        "uvicorn",
        "--app-dir",
        str(TOOLS),
        "--host",
        "127.0.0.1",
        "--workers",
        workers,
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    say(
        f"model {bundle.version}, {args.workers} worker(s), {args.connections} connections, "
        f"{args.duration:g} s per scenario after {args.warmup:g} s warm-up"
    )

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp, ExitStack() as servers:
        workdir = Path(tmp)
        plan: list[tuple[str, list[str], dict[str, str], str, list[Scenario]]] = []

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        argv = [*uvicorn, "--port", str(port), "bench_apps:floor"]
        plan.append(("floor", argv, {}, f"{base}/health", [Scenario(FLOOR, f"{base}/predict", single, 1)]))

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WEB_CONCURRENCY": workers,
            "MODEL_DIR": str(bundle.path),
            "RATE_LIMIT": "off",
        }  # one wrk client far above any per-client limit: measure the service
        runs = [
            Scenario(SERVICE, f"{base}/predict", single, 1),
            Scenario(SERVICE_BATCH, f"{base}/predict", batch_body, rows),
        ]
        plan.append(("service", [*python, "-m", "mlops_template", "serve"], env, f"{base}/ready", runs))

        if not args.skip_redis:
            redis_url = servers.enter_context(redis_server(workdir))
            leased, exact = str(unreachable_limit(workdir)), str(unreachable_limit(workdir, shared_lease=0))
            redis_runs = (("off", REDIS, "off", leased), ("leased", REDIS_LIMITED, "on", leased),
                          ("exact", REDIS_EXACT, "on", exact))  # fmt: skip
            for name, label, limit, params in redis_runs:
                port = free_port()
                base = f"http://127.0.0.1:{port}"
                env = {"HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": workers, "RATE_LIMIT": limit,
                       "MODEL_DIR": str(bundle.path), "REDIS_URL": redis_url, "PARAMS_FILE": params}  # fmt: skip
                argv = [*python, "-m", "mlops_template", "serve"]
                runs = [Scenario(label, f"{base}/predict", single, 1)]
                plan.append((f"service-redis-rate-limit-{name}", argv, env, f"{base}/ready", runs))

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        argv = [*uvicorn, "--port", str(port), "--factory", "bench_apps:baseline_app"]
        env = {"BENCH_MODEL": str(bundle.path / "model.joblib")}
        runs = [
            Scenario(BASELINE, f"{base}/predict", single, 1),
            Scenario(BASELINE_BATCH, f"{base}/predict", batch_body, rows),
        ]
        plan.append(("baseline", argv, env, f"{base}/health", runs))

        if not args.skip_mlflow:
            bin_dir = Path(sys.executable).parent
            model_dir = workdir / "mlflow-model"
            save_mlflow_model(bundle.path, model_dir)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            argv = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local"]
            argv += ["-h", "127.0.0.1", "-p", str(port), "-w", workers]
            env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
            runs = [
                Scenario(MLFLOW, f"{base}/invocations", mlflow_single, 1),
                Scenario(MLFLOW_BATCH, f"{base}/invocations", mlflow_batch, rows),
            ]
            plan.append(("mlflow", argv, env, f"{base}/ping", runs))

        # Every server up at once (idle ones cost nothing), then interleaved rounds: a neighbour's burst on a
        # shared machine hits all scenarios alike instead of one, and the medians are compared.
        scenarios: list[Scenario] = []
        for name, argv, env, ready_url, runs in plan:
            try:
                servers.enter_context(server(name, pinned(args.server_cpu, argv), env, ready_url, timeout=180))
            except RuntimeError as exc:
                say(f"{name}: {exc}")
                for scenario in runs:
                    scenario.error = str(exc)[:500]
            scenarios += runs
        for scenario in scenarios:
            if not scenario.error:
                prepare(scenario, args, workdir)
        slice_s = args.duration / args.rounds
        for number in range(args.rounds):
            say(f"round {number + 1}/{args.rounds}")
            for scenario in scenarios:
                if not scenario.error:
                    scenario.rounds.append(
                        wrk(scenario.url, scenario.body_file, slice_s, args.connections, args.load_cpu)
                    )
        results = {scenario.label: summary(scenario) for scenario in scenarios}
    for label, r in results.items():
        if "error" not in r:
            say(
                f"{label}: {r['rps']:.0f} req/s (rounds {r['rps_min']:.0f}..{r['rps_max']:.0f}), "
                f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"
                + (f", {r['rows_per_s']:.0f} rows/s" if r["rows_per_request"] > 1 else "")
            )

    inproc = in_process(bundle.model, pd.DataFrame(batch_records), 3.0, args.server_cpu)
    say(f"in-process: {inproc['rows_per_s']:.0f} rows/s ({inproc['median_ms']:.2f} ms per {inproc['rows']} rows)")

    def get(name: str, key: str) -> float | None:
        return results.get(name, {}).get(key)

    service_rps = get(SERVICE, "rps")
    values = {
        "service_vs_floor": ratio(service_rps, get(FLOOR, "rps")),
        "service_vs_mlflow": ratio(service_rps, get(MLFLOW, "rps")),
        "service_vs_baseline": ratio(service_rps, get(BASELINE, "rps")),
        "service_p99_ms": get(SERVICE, "p99_ms"),
        "redis_vs_floor": ratio(get(REDIS, "rps"), get(FLOOR, "rps")),
        "redis_limited_vs_floor": ratio(get(REDIS_LIMITED, "rps"), get(FLOOR, "rps")),
        "redis_limited_p99_ms": get(REDIS_LIMITED, "p99_ms"),
        "batch_vs_in_process": ratio(get(SERVICE_BATCH, "rows_per_s"), inproc["rows_per_s"]),
        "batch_vs_baseline_batch": ratio(get(SERVICE_BATCH, "rows_per_s"), get(BASELINE_BATCH, "rows_per_s")),
        "batch_vs_mlflow_batch": ratio(get(SERVICE_BATCH, "rows_per_s"), get(MLFLOW_BATCH, "rows_per_s")),
    }
    report = {
        "command": "make bench-serve",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {
            "workers": args.workers,
            "connections": args.connections,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "warmup_s": args.warmup,
            "batch_rows": args.batch_rows,
            "server_cpu": args.server_cpu,
            "load_cpu": args.load_cpu,
            "load_generator": "wrk -t1 (tools/bench_post.lua)",
            "model_version": bundle.version,
            "estimator": bundle.metadata.estimator,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
        "scenarios": results,
        "in_process": inproc,
        "ratios": values,
        "goals": goals(values),
    }
    write_text(args.report, json.dumps(report, indent=2) + "\n")
    print(table(report))
    say(f"written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
