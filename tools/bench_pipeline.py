"""Benchmark of the pipeline stages at several sizes: wall time and peak memory per stage.

Each stage runs as its own process (`python -m mlops_template <stage>`), exactly as DVC runs it;
peak memory is that process's max RSS (os.wait4). The baseline in the same run is the smallest size,
and the process start-up (`python -m mlops_template --help` importing the stage modules), so figures
are compared as ratios, not as absolute times. Not a test: `make bench-pipeline`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("prep", "train", "evaluate")
IMPORT_PROBE = "import mlops_template.pipeline.prep, mlops_template.pipeline.train, mlops_template.pipeline.evaluate"


def measure(command: list[str], cwd: Path) -> dict[str, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr.read().decode()}")
    return {"seconds": round(seconds, 3), "peak_mib": round(usage.ru_maxrss / 1024, 1)}


def bench_size(rows: int, workdir: Path) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["sample"]["rows"] = rows
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cli = [sys.executable, "-m", "mlops_template"]
    result = {"rows": rows, "sample": measure([*cli, "sample"], workdir)}
    for stage in STAGES:
        result[stage] = measure([*cli, stage], workdir)
    result["total_seconds"] = round(sum(result[s]["seconds"] for s in STAGES), 3)
    result["peak_mib"] = max(result[s]["peak_mib"] for s in STAGES)
    stages = ", ".join(f"{s} {result[s]['seconds']:.1f}s/{result[s]['peak_mib']:.0f}MiB" for s in STAGES)
    print(f"{rows:>9,} rows: {stages}", file=sys.stderr)
    return result


def table(report: dict) -> str:
    lines = [
        "| rows | prep s | train s | evaluate s | total s | × smallest | rows ratio | peak MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in report["sizes"]:
        lines.append(
            f"| {entry['rows']:,} | "
            + " | ".join(f"{entry[s]['seconds']:.1f}" for s in STAGES)
            + f" | {entry['total_seconds']:.1f} | {entry['time_ratio']:.1f} | {entry['rows_ratio']:.0f}"
            + f" | {entry['peak_mib']:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--output", type=Path, default=ROOT / "reports" / "bench-pipeline.json")
    args = parser.parse_args()
    # untimed first: on a fresh .venv the first import also writes the bytecode (make setup no longer compiles it)
    subprocess.run([sys.executable, "-c", IMPORT_PROBE], cwd=ROOT, check=True)
    startup = measure([sys.executable, "-c", IMPORT_PROBE], ROOT)
    sizes = []
    for rows in sorted(args.rows):
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
            sizes.append(bench_size(rows, Path(tmp)))
    smallest = sizes[0]
    for entry in sizes:
        entry["time_ratio"] = round(entry["total_seconds"] / smallest["total_seconds"], 2)
        entry["rows_ratio"] = entry["rows"] / smallest["rows"]
        # time beyond the fixed start-up cost of the three processes, per row: flat = linear growth
        net = entry["total_seconds"] - len(STAGES) * startup["seconds"]
        entry["net_us_per_row"] = round(net / entry["rows"] * 1e6, 2)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "estimator": yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["estimator"],
        "startup": startup,
        "sizes": sizes,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.output)
    print(table(report))
    print(f"\nprocess start-up (imports): {startup['seconds']:.1f}s, {startup['peak_mib']:.0f} MiB; -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
