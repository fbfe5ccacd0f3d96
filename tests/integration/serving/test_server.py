"""The service for real: uvicorn on loopback, refusals at start-up, graceful shutdown, schemathesis, batch CLI."""

from __future__ import annotations

import csv
import json
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

from tests.conftest import ROOT, free_port, require_tool
from tests.integration.conftest import serve_command, server_env

pytestmark = pytest.mark.integration


def example(bundle: Path) -> dict:
    return json.loads((bundle / "metadata.json").read_text())["example"]


def test_predict_over_http(served_bundle: Path, live_server):
    server = live_server(served_bundle)
    record = example(served_bundle)
    response = httpx.post(f"{server.url}/predict", json=[record, {**record, "property_area": "Mars"}],
                          headers={"X-Request-ID": "it-42"}, timeout=10)  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["x-request-id"] == "it-42"
    assert body["request_id"] == "it-42"
    assert body["runtime"] == "onnx"
    assert body["predictions"][1]["unknown_categories"] == ["property_area"]
    bad = httpx.post(f"{server.url}/predict", content=b"[{", timeout=10)
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_json"
    assert 'model_unknown_category_total{feature="property_area"} 1.0' in httpx.get(f"{server.url}/metrics").text
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("request_id") == "it-42"]
    assert access[0]["route"] == "/predict"
    assert access[0]["status"] == 200
    assert access[0]["duration_ms"] > 0
    assert server.stop() in (0, -15)


def test_concurrent_requests_each_get_their_own_prediction(served_bundle: Path, live_server):
    """Concurrent small requests share model calls (micro-batching): no answer may carry another's rows."""
    # 240 requests from one address: the per-client rate limit would answer some with 429 (it did in CI)
    server = live_server(served_bundle, RATE_LIMIT="off")
    metadata = json.loads((served_bundle / "metadata.json").read_text())
    numeric = [f for f in metadata["features"] if f["type"] == "numeric"]

    def value(feature: dict, share: float) -> float:
        number = feature["min"] + (feature["max"] - feature["min"]) * share
        return round(number) if feature.get("integer") else number

    records = [
        {**metadata["example"], **{f["name"]: value(f, (i * 7 + k) % 40 / 39) for k, f in enumerate(numeric)}}
        for i in range(40)
    ]
    with httpx.Client(base_url=server.url, timeout=10) as client:
        alone = [client.post("/predict", json=record).json()["predictions"][0] for record in records]
    assert len({json.dumps(p["probabilities"]) for p in alone}) > 10  # the rows really differ

    def ask(i: int) -> tuple[int, dict]:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            return i, client.post("/predict", json=records[i]).json()["predictions"][0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(ask, list(range(40)) * 5))
    for i, answer in answers:
        assert answer["prediction"] == alone[i]["prediction"]
        assert answer["probabilities"] == pytest.approx(alone[i]["probabilities"], abs=1e-6)
    assert server.stop() in (0, -15)


def run_serve(model_dir: Path) -> subprocess.CompletedProcess:
    env = server_env(model_dir, free_port())
    return subprocess.run(serve_command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if "error" in line.lower()]


def test_refuses_tampered_bundle(served_bundle: Path, tmp_path: Path):
    bundle = shutil.copytree(served_bundle, tmp_path / "model")
    with (bundle / "model.joblib").open("ab") as handle:
        handle.write(b"\0")
    result = run_serve(bundle)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = error_lines(result)
    assert "model.joblib: checksum mismatch" in line


def test_refuses_rejected_bundle(served_bundle: Path, tmp_path: Path):
    bundle = shutil.copytree(served_bundle, tmp_path / "model")
    metadata = json.loads((bundle / "metadata.json").read_text())
    metadata["gate"]["verdict"] = "REJECTED"
    (bundle / "metadata.json").write_text(json.dumps(metadata))
    result = run_serve(bundle)
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert "gate verdict is REJECTED" in line


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda raw: raw.update(format_version=1), "format_version 1 is older than"),  # a bundle from before
        (lambda raw: raw.pop("features"), "field `features` is missing"),
    ],
    ids=["older-format", "missing-field"],
)
def test_refuses_malformed_metadata_with_one_line(served_bundle: Path, tmp_path: Path, change, problem: str):
    """The service does not start and `bundle-check` exits 2, each with the same line: file, field and fix."""
    bundle = shutil.copytree(served_bundle, tmp_path / "model")
    metadata = json.loads((bundle / "metadata.json").read_text())
    change(metadata)
    (bundle / "metadata.json").write_text(json.dumps(metadata))
    expected = f"{bundle / 'metadata.json'}: {problem}"
    result = run_serve(bundle)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = error_lines(result)
    assert expected in line and "rebuild the bundle with `make pipeline`" in line
    check = subprocess.run([sys.executable, "-m", "mlops_template", "bundle-check", "--dir", str(bundle)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert check.returncode == 2
    assert check.stdout == ""
    (line,) = check.stderr.splitlines()
    assert line.startswith(f"error: {expected}") and line.endswith("rebuild the bundle with `make pipeline`")


def test_graceful_shutdown_lets_in_flight_request_finish(served_bundle: Path, live_server):
    server = live_server(served_bundle)
    body = json.dumps(example(served_bundle)).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode() + body[:10])  # the request is in flight: half its body sent
        time.sleep(0.5)
        server.process.send_signal(15)
        time.sleep(1.0)
        assert server.process.poll() is None, "the server quit with a request in flight"
        sock.sendall(body[10:])
        response = b""
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    assert b'"predictions"' in response
    assert server.process.wait(timeout=30) in (0, -15)
    assert "Application shutdown complete" in server.output()


def test_schemathesis_finds_no_server_error(served_bundle: Path, live_server, tmp_path: Path):
    st = require_tool("schemathesis", "pip install -r requirements-dev.txt")
    # admin routes get a valid key (schemathesis also tries them without it); the limiter would answer 429s
    server = live_server(served_bundle, MAX_BATCH_ROWS="20", ADMIN_API_KEYS="schemathesis-key", RATE_LIMIT="off")
    result = subprocess.run(
        [st, "run", f"{server.url}/openapi.json", "--checks", "all", "--max-examples", "40", "--seed", "1",
         "-H", "X-API-Key: schemathesis-key",
         "--phases", "examples,coverage,fuzzing", "--request-timeout", "20",
         "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    (report,) = tmp_path.glob("junit*.xml")
    cases = ElementTree.parse(report).getroot().iter("testcase")
    assert {case.get("name") for case in cases} >= {"POST /predict", "GET /model", "GET /ready", "GET /health",
                                                    "POST /feedback", "POST /experiment", "GET /experiment",
                                                    "GET /monitoring/drift"}  # fmt: skip


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def predict_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mlops_template", "predict", "--no-progress", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_batch_cli_reports_bad_rows(served_bundle: Path, tmp_path: Path):
    record = example(served_bundle)
    header = ["id", *record]
    good = ["" if v is None else str(v) for v in record.values()]
    rows = [["a", *good], ["b", *good], ["c", *good]]
    rows[1][header.index("applicant_income")] = "lots"
    rows.append(["d", *good[:-1], "Mars"])
    write_csv(tmp_path / "in.csv", header, rows)
    out, rejects = tmp_path / "out.csv", tmp_path / "rejects.csv"
    result = predict_cli("--input", str(tmp_path / "in.csv"), "--output", str(out), "--rejects", str(rejects),
                         "--model-dir", str(served_bundle), "--chunk-rows", "2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["scored"], summary["rejected"]) == (4, 3, 1)
    scored = list(csv.DictReader(out.open()))
    assert [r["id"] for r in scored] == ["a", "c", "d"]
    assert scored[2]["flags_unknown_categories"] == list(record)[-1]
    assert all(0.0 <= float(r[f"probability_{r['prediction']}"]) <= 1.0 for r in scored)
    (rejected,) = list(csv.DictReader(rejects.open()))
    assert rejected["line"] == "3"
    assert "'lots' is not a number" in rejected["reason"]
    assert "line 3: applicant_income" in result.stderr


def test_batch_cli_refuses_rejected_bundle_and_bad_header(served_bundle: Path, tmp_path: Path):
    bundle = shutil.copytree(served_bundle, tmp_path / "model")
    metadata = json.loads((bundle / "metadata.json").read_text())
    metadata["gate"]["verdict"] = "REJECTED"
    (bundle / "metadata.json").write_text(json.dumps(metadata))
    write_csv(tmp_path / "in.csv", ["x"], [["1"]])
    out = tmp_path / "out.csv"
    refused = predict_cli("--input", str(tmp_path / "in.csv"), "--output", str(out), "--model-dir", str(bundle))
    assert refused.returncode == 2
    assert "gate verdict is REJECTED" in refused.stderr
    missing = predict_cli("--input", str(tmp_path / "in.csv"), "--output", str(out), "--model-dir", str(served_bundle))
    assert missing.returncode == 2
    assert "missing; the model needs" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert not out.exists()
