"""`make bench-serve`: the prediction service against its floor and the usual alternatives, in one run.

On loopback, every server with the same worker count pinned to one core, wrk pinned to the other, a warm-up
then a bounded measurement each:
  floor            a bare FastAPI endpoint taking the same body (tools/bench_apps.py: floor)
  service          our /predict (`python -m mlops_template serve`), one row, then 1,000-row batches
  baseline         a plain FastAPI + pandas + scikit-learn app (tools/bench_apps.py: baseline_app)
  mlflow           `mlflow models serve --env-manager local` of the same pipeline (separate .bench-venv)
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
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
LUA = TOOLS / "bench_post.lua"
MODEL_LIBRARIES = ("scikit-learn", "numpy", "scipy", "joblib", "pandas")  # what unpickling the pipeline needs
GOALS = {  # the targets, reported (not asserted): met or not
    "service_vs_floor": (">=", 0.70, "single-row /predict req/s vs the bare FastAPI floor"),
    "service_vs_mlflow": (">=", 10.0, "single-row /predict req/s vs mlflow models serve"),
    "service_p99_ms": ("<", 10.0, "single-row /predict p99 latency (ms) at the benchmark's connections"),
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
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contextmanager
def server(name: str, argv: list[str], env: dict[str, str], ready_url: str, timeout: float = 120) -> Iterator[None]:
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
        yield
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


def wrk(url: str, body_file: Path, seconds: float, connections: int, cpu: int | None) -> dict[str, Any]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(LUA), url]
    result = subprocess.run(
        pinned(cpu, argv),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        env={**os.environ, "BENCH_BODY": str(body_file)},
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


def measure(name: str, url: str, body: bytes, rows: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Check one request answers 200, warm up, then measure; a failing endpoint is reported, not benchmarked."""
    status, text = http("POST", url, body)
    if status != 200:
        say(f"{name}: HTTP {status} on the first request, not benchmarked: {text[:300]}")
        return {"error": f"HTTP {status}: {text[:500]}", "rows_per_request": rows}
    body_file = workdir / (re.sub(r"\W+", "-", name) + ".json")
    body_file.write_bytes(body)
    wrk(url, body_file, args.warmup, args.connections, args.load_cpu)
    result = wrk(url, body_file, args.duration, args.connections, args.load_cpu)
    result["rows_per_request"] = rows
    result["rows_per_s"] = round(result["rps"] * rows, 1)
    say(
        f"{name}: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms"
        + (f", {result['rows_per_s']:.0f} rows/s" if rows > 1 else "")
        + (f", {result['errors']} errors" if result["errors"] else "")
    )
    return result


def scenarios_on(
    name: str,
    argv: list[str],
    env: dict[str, str],
    ready_url: str,
    runs: list[tuple[str, str, bytes, int]],
    args: argparse.Namespace,
    workdir: Path,
    timeout: float = 120,
) -> dict[str, dict[str, Any]]:
    """Start one server and measure each (scenario, url, body, rows) on it; a server that fails is reported."""
    try:
        with server(name, pinned(args.server_cpu, argv), env, ready_url, timeout):
            return {label: measure(label, url, body, rows, args, workdir) for label, url, body, rows in runs}
    except RuntimeError as exc:
        say(f"{name}: {exc}")
        return {label: {"error": str(exc)[:500], "rows_per_request": rows} for label, _, _, rows in runs}


def bench_venv(path: Path) -> Path:
    """The separate environment for mlflow, with the same model library pins (created once, then reused)."""
    wanted = [
        line.strip()
        for line in (TOOLS / "bench-requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.split("==")[0].strip().lower() in MODEL_LIBRARIES:
            wanted.append(line.strip())
    stamp = path / ".bench-installed"
    if stamp.is_file() and stamp.read_text() == "\n".join(wanted):
        return path / "bin"
    uv = shutil.which("uv") or sys.exit("bench-serve: uv not found (run `make setup`)")
    say(f"creating {path} with {', '.join(wanted)}")
    subprocess.run([uv, "venv", "-q", "--clear", "--python", sys.executable, str(path)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(path / "bin" / "python"), *wanted], check=True)
    stamp.write_text("\n".join(wanted))
    return path / "bin"


def save_mlflow_model(bin_dir: Path, joblib_file: Path, destination: Path) -> None:
    code = (
        "import sys, joblib, mlflow.sklearn\n"
        "mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2], serialization_format='pickle')\n"
    )
    subprocess.run(
        [str(bin_dir / "python"), "-c", code, str(joblib_file), str(destination)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )


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
        "| scenario | rows/request | req/s | rows/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["scenarios"].items():
        if "error" in r:
            reason = " ".join(r["error"].split())[:80]
            lines.append(f"| {name} | {r['rows_per_request']} | failed: {reason} | | | | |")
            continue
        lines.append(
            f"| {name} | {r['rows_per_request']} | {r['rps']:,.0f} | {r['rows_per_s']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |"
        )
    inproc = report["in_process"]
    lines.append(
        f"| in-process predict_proba | {inproc['rows']} | | {inproc['rows_per_s']:,.0f} | "
        f"{inproc['median_ms']:.2f} (median call) | | |"
    )
    lines += ["", "| goal | value | target | met |", "|---|---:|---|---|"]
    for g in report["goals"]:
        value = "n/a" if g["value"] is None else f"{g['value']:g}"
        lines.append(f"| {g['what']} | {value} | {g['target']} | {({True: 'yes', False: 'NO'}).get(g['met'], 'n/a')} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds per scenario")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    parser.add_argument("--batch-rows", type=int, default=1000, help="rows per batch request")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))
    parser.add_argument("--server-cpu", type=int, default=0, help="core for the servers (taskset)")
    parser.add_argument("--load-cpu", type=int, default=1, help="core for wrk (taskset)")
    parser.add_argument("--venv", type=Path, default=ROOT / ".bench-venv", help="the mlflow environment")
    parser.add_argument("--skip-mlflow", action="store_true", help="leave mlflow out (no .bench-venv)")
    parser.add_argument("--report", type=Path, default=Path("reports/bench-serve.json"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench-serve: wrk not found: apt-get install wrk")
    if not shutil.which("taskset") or len(os.sched_getaffinity(0)) < 2:
        say("fewer than 2 cores or no taskset: running unpinned (numbers are noisier)")
        args.server_cpu = args.load_cpu = None
    return args


def main() -> int:
    args = parse_args()
    import pandas as pd

    from mlops_template.bundle import load_bundle
    from mlops_template.config import load_params
    from mlops_template.fsutil import write_text
    from mlops_template.prep import load_prepared

    params = load_params()
    bundle = load_bundle(params.gate.bundle_dir)  # verified checksums, VALIDATED only
    features = [f["name"] for f in bundle.metadata["features"]]
    test, _, _ = load_prepared(params.prep.output_dir, "test")
    batch = test[features].sample(n=args.batch_rows, replace=len(test) < args.batch_rows, random_state=0)
    single = bundle.metadata["example"]
    bodies = {"single": json.dumps(single).encode(), "batch": json.dumps(records(batch)).encode()}
    mlflow_bodies = {
        k: json.dumps({"dataframe_records": v if isinstance(v, list) else [v]}).encode()
        for k, v in (("single", single), ("batch", records(batch)))
    }
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
    scenarios: dict[str, dict[str, Any]] = {}
    say(
        f"model {bundle.version}, {args.workers} worker(s), {args.connections} connections, "
        f"{args.duration:g} s per scenario after {args.warmup:g} s warm-up"
    )

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        workdir = Path(tmp)

        def url() -> str:
            return f"http://127.0.0.1:{free_port()}"

        base = url()
        argv = [*uvicorn, "--port", base.rsplit(":", 1)[1], "bench_apps:floor"]
        runs = [("floor (bare FastAPI)", f"{base}/predict", bodies["single"], 1)]
        scenarios |= scenarios_on("floor", argv, {}, f"{base}/health", runs, args, workdir)

        base = url()
        env = {
            "HOST": "127.0.0.1",
            "PORT": base.rsplit(":", 1)[1],
            "WEB_CONCURRENCY": workers,
            "MODEL_DIR": str(bundle.path),
        }
        runs = [
            ("service /predict", f"{base}/predict", bodies["single"], 1),
            ("service /predict batch", f"{base}/predict", bodies["batch"], args.batch_rows),
        ]
        argv = [*python, "-m", "mlops_template", "serve"]
        scenarios |= scenarios_on("service", argv, env, f"{base}/ready", runs, args, workdir)

        base = url()
        argv = [*uvicorn, "--port", base.rsplit(":", 1)[1], "--factory", "bench_apps:baseline_app"]
        runs = [
            ("baseline FastAPI+pandas", f"{base}/predict", bodies["single"], 1),
            ("baseline FastAPI+pandas batch", f"{base}/predict", bodies["batch"], args.batch_rows),
        ]
        env = {"BENCH_MODEL": str(bundle.path / "model.joblib")}
        scenarios |= scenarios_on("baseline", argv, env, f"{base}/health", runs, args, workdir)

        if not args.skip_mlflow:
            bin_dir = bench_venv(args.venv)
            model_dir = workdir / "mlflow-model"
            save_mlflow_model(bin_dir, bundle.path / "model.joblib", model_dir)
            base = url()
            argv = [
                str(bin_dir / "mlflow"),
                "models",
                "serve",
                "-m",
                str(model_dir),
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                base.rsplit(":", 1)[1],
                "-w",
                workers,
            ]
            runs = [
                ("mlflow models serve", f"{base}/invocations", mlflow_bodies["single"], 1),
                ("mlflow models serve batch", f"{base}/invocations", mlflow_bodies["batch"], args.batch_rows),
            ]
            env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
            scenarios |= scenarios_on("mlflow", argv, env, f"{base}/ping", runs, args, workdir, timeout=180)

    inproc = in_process(bundle.model, pd.DataFrame(records(batch)), 3.0, args.server_cpu)
    say(f"in-process: {inproc['rows_per_s']:.0f} rows/s ({inproc['median_ms']:.2f} ms per {inproc['rows']} rows)")

    def get(name: str, key: str) -> float | None:
        return scenarios.get(name, {}).get(key)

    service_rps = get("service /predict", "rps")
    values = {
        "service_vs_floor": ratio(service_rps, get("floor (bare FastAPI)", "rps")),
        "service_vs_mlflow": ratio(service_rps, get("mlflow models serve", "rps")),
        "service_vs_baseline": ratio(service_rps, get("baseline FastAPI+pandas", "rps")),
        "service_p99_ms": get("service /predict", "p99_ms"),
        "batch_vs_in_process": ratio(get("service /predict batch", "rows_per_s"), inproc["rows_per_s"]),
        "batch_vs_baseline_batch": ratio(
            get("service /predict batch", "rows_per_s"), get("baseline FastAPI+pandas batch", "rows_per_s")
        ),
        "batch_vs_mlflow_batch": ratio(
            get("service /predict batch", "rows_per_s"), get("mlflow models serve batch", "rows_per_s")
        ),
    }
    report = {
        "command": "make bench-serve",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {
            "workers": args.workers,
            "connections": args.connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "batch_rows": args.batch_rows,
            "server_cpu": args.server_cpu,
            "load_cpu": args.load_cpu,
            "load_generator": "wrk -t1 (tools/bench_post.lua)",
            "model_version": bundle.version,
            "estimator": bundle.metadata.get("estimator"),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
        "scenarios": scenarios,
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
