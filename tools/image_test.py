"""Build the serving image from the gated bundle and test it for real: `make image` / `make image-test`.

Steps: refuse a bundle the gate did not VALIDATE (`python -m mlops_template bundle-check`), build with the
docker-compatible command in CONTAINER_ENGINE (default `docker`) with the bundle's model_version as the
`model_version` label, run the container, wait for /ready, POST the bundle's own example row to /predict, run
the HEALTHCHECK (`healthcheck run`, podman; falls back to polling `inspect` with docker), check the process is
not root, check it stops cleanly on SIGTERM, check the image's label and that its bundle hashes to what dvc.lock
records (when it does), record the image size in
reports/image.json. The container is always removed. CI and people run this same script.
The web UI image (the Dockerfile's `ui` target) is built too and run beside the service, in its network
namespace: it must come up healthy, as a non-root user, read the service's /model over HTTP and stop cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_IMAGE = "mlops-template-serving:local"
DEFAULT_UI_IMAGE = "mlops-template-ui:local"


class CheckError(Exception):
    """A check failed: one line naming what and how to investigate."""


def say(message: str) -> None:
    print(f"image-test: {message}", file=sys.stderr, flush=True)


def engine_command(value: str | None = None) -> list[str]:
    """The container engine as argv (CONTAINER_ENGINE may hold a path or a command with arguments)."""
    return shlex.split(value or os.environ.get("CONTAINER_ENGINE") or "docker")


def run(argv: Sequence[str], timeout: float = 120, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
    # Files, not pipes: a detached container's monitor may inherit the engine's stderr and hold a pipe open.
    try:
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            completed = subprocess.run(list(argv), stdout=out, stderr=err, text=True, timeout=timeout, **kwargs)
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(completed.args, completed.returncode, out.read(), err.read())
    except FileNotFoundError:
        raise CheckError(f"{argv[0]}: not found (set CONTAINER_ENGINE to a docker-compatible command)") from None
    except subprocess.TimeoutExpired:
        raise CheckError(f"`{shlex.join(argv)}` did not finish within {timeout:.0f} s") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-15:]
        raise CheckError(f"`{shlex.join(argv)}` exited {result.returncode}:\n  " + "\n  ".join(detail))
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: Any = None, timeout: float = 5) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def check_bundle(context: Path, bundle: str | None) -> Path:
    """The bundle path relative to the build context, after the package's own gate check."""
    argv = [sys.executable, "-m", "mlops_template", "bundle-check", *(["--dir", bundle] if bundle else [])]
    result = subprocess.run(argv, cwd=context, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise CheckError(f"refusing to build: {result.stderr.strip().splitlines()[-1]}")
    path = Path(result.stdout.strip().splitlines()[-1])
    absolute = (context / path).resolve()
    try:
        relative = absolute.relative_to(context.resolve())
    except ValueError:
        raise CheckError(f"bundle {absolute} is outside the build context {context}: copy it in") from None
    ignore = context / ".dockerignore"
    allowed = {line.strip().rstrip("/") for line in ignore.read_text().splitlines()} if ignore.is_file() else set()
    if "*" in allowed and f"!{relative.as_posix()}" not in allowed:  # an allow-list must name the bundle
        raise CheckError(f"{ignore}: add `!{relative.as_posix()}/` so the bundle {relative} is in the build context")
    return relative


def build(engine: list[str], context: Path, image: str, bundle: Path, flags: list[str], target: str = "") -> None:
    from mlops_template.core.bundle import read_metadata

    say(f"building {image}{f' (target {target})' if target else ''} with bundle {bundle} ({shlex.join(engine)})")
    started = time.monotonic()
    from mlops_template.core.bundle import git_commit
    from mlops_template.core.provenance import LOCK, committed_at

    version = read_metadata(context / bundle).model_version
    # GIT_COMMIT, MODEL_COMMITTED_AT: the service reports them in /model (the bundle records no commit nor time:
    # it is reproducible; the image has no git history to read them from)
    argv = [*engine, "build", *flags, *(["--target", target] if target else []),
            "--build-arg", f"BUNDLE_DIR={bundle.as_posix()}", "--build-arg", f"MODEL_VERSION={version}",
            "--build-arg", f"GIT_COMMIT={git_commit(context) or ''}",
            "--build-arg", f"MODEL_COMMITTED_AT={committed_at(context / bundle, context / LOCK) or ''}",
            "-t", image, "-f"]  # fmt: skip
    run([*argv, str(context / "Dockerfile"), str(context)], timeout=1800)
    say(f"built in {time.monotonic() - started:.0f} s")


def wait_ready(engine: list[str], name: str, base: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, body = http("GET", f"{base}/ready", timeout=2)
            if status == 200:
                return body
        except (OSError, urllib.error.URLError):
            pass
        state = run([*engine, "inspect", "--format", "{{.State.Status}}", name], check=False, timeout=60)
        if state.stdout.strip() in {"exited", "dead", "stopped"}:
            raise CheckError(f"the container stopped before it was ready; logs:\n{logs(engine, name)}")
        time.sleep(0.5)
    raise CheckError(f"/ready not 200 within {timeout:.0f} s; logs:\n{logs(engine, name)}")


def logs(engine: list[str], name: str) -> str:
    result = run([*engine, "logs", name], check=False, timeout=60)
    return "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])


def healthcheck(engine: list[str], name: str, timeout: float) -> str:
    """Run the image's HEALTHCHECK now (podman), or wait for docker's scheduler to report it."""
    result = run([*engine, "healthcheck", "run", name], check=False, timeout=60)
    output = (result.stdout + result.stderr).strip()
    if result.returncode == 0:
        return "healthy (healthcheck run)"
    if "unhealthy" in output:
        raise CheckError(f"HEALTHCHECK failed: {output}")
    # docker has no `healthcheck run`: its own scheduler runs the check every --interval.
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = run([*engine, "inspect", "--format", "{{.State.Health.Status}}", name], check=False).stdout.strip()
        if status == "healthy":
            return "healthy (inspect)"
        if status == "unhealthy" or status in {"", "<no value>"}:
            break
        time.sleep(2)
    raise CheckError(f"HEALTHCHECK status {status or 'missing'!r} (healthcheck run said: {output or 'nothing'})")


def container_checks(engine: list[str], image: str, bundle: Path, port: int, timeout: float,
                     ui_image: str | None = None, committed: str | None = None) -> dict[str, Any]:  # fmt: skip
    name = f"mlops-image-test-{os.getpid()}-{port}"
    base = f"http://127.0.0.1:{port}"
    from mlops_template.core.bundle import git_commit, read_metadata

    metadata = read_metadata(bundle)
    checks: dict[str, Any] = {}
    run([*engine, "rm", "-f", name], check=False)
    try:
        say(f"running {name} on port {port}")
        run([*engine, "run", "-d", "--name", name, "-e", f"PORT={port}", "-p", f"127.0.0.1:{port}:{port}", image])
        started = time.monotonic()
        wait_ready(engine, name, base, timeout)
        checks["ready_seconds"] = round(time.monotonic() - started, 2)
        say(f"/ready after {checks['ready_seconds']} s")

        status, body = http("POST", f"{base}/predict", metadata.example)
        if status != 200:
            raise CheckError(f"POST /predict with the bundle's example row: HTTP {status}: {body}")
        checks["predict"] = body
        status, model = http("GET", f"{base}/model")
        if status != 200 or metadata.model_version not in json.dumps(model):
            raise CheckError(f"GET /model: HTTP {status}, expected model version {metadata.model_version}: {model}")
        checks["model_version"] = metadata.model_version
        if model.get("git_commit") != git_commit(bundle):  # the bundle lies inside the build context
            raise CheckError(f"GET /model: git_commit {model.get('git_commit')!r}, built from {git_commit(bundle)!r}")
        checks["git_commit"] = model.get("git_commit")
        if model.get("model_committed_at") != committed:  # MODEL_COMMITTED_AT: the build argument, not recomputed
            raise CheckError(f"GET /model: model_committed_at {model.get('model_committed_at')!r}, built with "
                             f"{committed!r}")  # fmt: skip
        checks["model_committed_at"] = committed
        say(f"/predict ok: {json.dumps(body)[:200]}")

        checks["healthcheck"] = healthcheck(engine, name, timeout)
        say(f"HEALTHCHECK {checks['healthcheck']}")

        uid = run([*engine, "exec", name, "id", "-u"]).stdout.strip()
        if uid in {"", "0"}:
            raise CheckError(f"the service runs as uid {uid or '?'} (root); the Dockerfile must set USER")
        checks["uid"] = int(uid)
        say(f"process uid {uid} (not root)")
        if ui_image:
            checks["ui"] = ui_checks(engine, ui_image, name, port, metadata.model_version, timeout)

        # 0, or 143 when the server re-raises SIGTERM after its clean shutdown (uvicorn does); 137 = killed
        checks["stop_seconds"], checks["stop_exit_code"] = stop_cleanly(engine, name)
        say(f"stopped cleanly on SIGTERM in {checks['stop_seconds']} s")
    except CheckError:
        say(f"container logs:\n{logs(engine, name)}")
        raise
    finally:
        run([*engine, "rm", "-f", name], check=False, timeout=60)
    return checks


def stop_cleanly(engine: list[str], name: str) -> tuple[float, int]:
    """`stop` (SIGTERM, then SIGKILL after 20 s): seconds taken and the exit code (0 or 143 is graceful)."""
    started = time.monotonic()
    run([*engine, "stop", "-t", "20", name], timeout=60)
    code = run([*engine, "inspect", "--format", "{{.State.ExitCode}}", name]).stdout.strip()
    if code not in {"0", "143"}:
        raise CheckError(f"{name}: on SIGTERM the container exited {code}: not a graceful shutdown (137 = killed)")
    return round(time.monotonic() - started, 2), int(code)


UI_PROBE = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/_stcore/health', timeout=4)"
UI_MODEL = "from mlops_template.ui.client import Client; print(Client().model()['model_version'])"


def ui_checks(engine: list[str], image: str, service: str, port: int, version: str, timeout: float) -> dict[str, Any]:
    """The UI image beside the running service (its network namespace, so 127.0.0.1 is the service)."""
    name, ui_port = f"{service}-ui", free_port()
    checks: dict[str, Any] = {"image": image}
    run([*engine, "rm", "-f", name], check=False)
    try:
        say(f"running the UI {name} (port {ui_port}) beside {service}")
        env = ["-e", f"API_URL=http://127.0.0.1:{port}", "-e", f"UI_PORT={ui_port}"]
        joined = run([*engine, "run", "-d", "--name", name, "--network", f"container:{service}", *env, image],
                     check=False)  # fmt: skip
        checks["network"] = f"container:{service}"
        if joined.returncode != 0:
            if "network" not in joined.stderr:
                raise CheckError(f"starting the UI container failed: {joined.stderr.strip()[-500:]}")
            # an engine that puts every container on the host network refuses the namespace join;
            # there the service's port is on the host's 127.0.0.1 already
            say(f"the engine refused --network container: ({joined.stderr.strip()[-120:]}); using its default")
            run([*engine, "rm", "-f", name], check=False)
            run([*engine, "run", "-d", "--name", name, *env, image])
            checks["network"] = "engine default"
        started, deadline = time.monotonic(), time.monotonic() + timeout
        probe = [*engine, "exec", name, "python", "-c", UI_PROBE.format(port=ui_port)]
        while run(probe, check=False, timeout=60).returncode != 0:
            if time.monotonic() > deadline:
                raise CheckError(f"the UI did not answer /_stcore/health within {timeout:.0f} s:\n{logs(engine, name)}")
            time.sleep(0.5)
        checks["ready_seconds"] = round(time.monotonic() - started, 2)
        seen = run([*engine, "exec", name, "python", "-c", UI_MODEL], timeout=60).stdout.strip()
        if seen != version:
            raise CheckError(f"the UI read model version {seen!r} from the service, expected {version}")
        checks["model_version"] = seen
        checks["healthcheck"] = healthcheck(engine, name, timeout)
        uid = run([*engine, "exec", name, "id", "-u"]).stdout.strip()
        if uid in {"", "0"}:
            raise CheckError(f"the UI runs as uid {uid or '?'} (root); the Dockerfile's ui stage must set USER")
        checks["uid"] = int(uid)
        checks["stop_seconds"], checks["stop_exit_code"] = stop_cleanly(engine, name)
        say(f"UI ok: healthy, uid {uid}, read model {seen} from the service, stopped cleanly")
    except CheckError:
        say(f"UI container logs:\n{logs(engine, name)}")
        raise
    finally:
        run([*engine, "rm", "-f", name], check=False, timeout=60)
    return checks


# md5 of every file under the image's bundle, as DVC hashes a directory's files
HASH_FILES = (
    "import hashlib, json, pathlib; root = pathlib.Path('/app/model'); print(json.dumps(sorted("
    "({'md5': hashlib.md5(p.read_bytes()).hexdigest(), 'relpath': p.relative_to(root).as_posix()} "
    "for p in root.rglob('*') if p.is_file()), key=lambda e: e['relpath'])))"
)


def dvc_dir_md5(entries: list[dict[str, str]]) -> str:
    """DVC's hash of a directory (what dvc.lock records): md5 of its sorted file list as JSON, plus `.dir`."""
    import hashlib

    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def locked_md5(context: Path, bundle: Path) -> str | None:
    """The md5 dvc.lock records for the bundle directory (None: no dvc.lock, or it does not track the bundle)."""
    import yaml

    lock = context / "dvc.lock"
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {}) if lock.is_file() else {}
    outs = [out for stage in stages.values() for out in stage.get("outs", [])]
    return next((out.get("md5") for out in outs if Path(out.get("path", "")) == bundle), None)


def image_bundle(engine: list[str], image: str, context: Path, bundle: Path, version: str) -> dict[str, Any]:
    """The image's `model_version` label and its bundle's DVC hash, checked against metadata.json and dvc.lock."""
    label = run([*engine, "image", "inspect", "--format", '{{ index .Config.Labels "model_version" }}', image])
    if label.stdout.strip() != version:
        raise CheckError(f"the image's model_version label is {label.stdout.strip()!r}, the bundle's is {version}")
    files = run([*engine, "run", "--rm", "--entrypoint", "python", image, "-c", HASH_FILES], timeout=120)
    md5 = dvc_dir_md5(json.loads(files.stdout.strip().splitlines()[-1]))
    locked = locked_md5(context, bundle)
    if locked is not None and locked != md5:
        raise CheckError(f"the image's bundle hashes to {md5}, dvc.lock records {locked} for {bundle}: not that bundle")
    return {"model_version_label": version, "bundle_md5": md5, "dvc_lock_md5": locked}


def image_size(engine: list[str], image: str) -> int:
    return int(run([*engine, "image", "inspect", "--format", "{{.Size}}", image]).stdout.strip())


def write_report(path: Path, report: dict[str, Any]) -> None:
    from mlops_template.core.fsutil import write_text

    write_text(path, json.dumps(report, indent=2) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", help="docker-compatible command (default: $CONTAINER_ENGINE or docker)")
    parser.add_argument("--image", default=os.environ.get("IMAGE", DEFAULT_IMAGE), help="image tag")
    parser.add_argument("--ui-image", default=os.environ.get("UI_IMAGE", DEFAULT_UI_IMAGE),
                        help="tag of the web UI image (the Dockerfile's `ui` target); empty: skip it")  # fmt: skip
    parser.add_argument("--context", type=Path, default=Path("."), help="build context: the project root")
    parser.add_argument("--bundle", help="bundle directory inside the context (default: gate.bundle_dir)")
    parser.add_argument("--build-only", action="store_true", help="check the bundle and build; run nothing")
    parser.add_argument("--build-flags", default="", help="extra build options, e.g. BuildKit cache flags")
    parser.add_argument("--port", type=int, help="host port for the container (default: a free one)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for /ready and the healthcheck")
    parser.add_argument("--report", type=Path, default=Path("reports/image.json"), help="where to record the result")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    engine = engine_command(args.engine)
    context = args.context.resolve()
    try:
        bundle = check_bundle(context, args.bundle)
        build(engine, context, args.image, bundle, shlex.split(args.build_flags))
        size = image_size(engine, args.image)
        say(f"image {args.image}: {size / 1e6:.0f} MB")
        ui_size = None
        if args.ui_image:
            build(engine, context, args.ui_image, bundle, shlex.split(args.build_flags), target="ui")
            ui_size = image_size(engine, args.ui_image)
            say(f"image {args.ui_image}: {ui_size / 1e6:.0f} MB")
        if args.build_only:
            return 0
        from mlops_template.core.provenance import LOCK, committed_at

        checks = container_checks(engine, args.image, context / bundle, args.port or free_port(), args.timeout,
                                  args.ui_image or None, committed_at(context / bundle, context / LOCK))  # fmt: skip
        checks["bundle"] = image_bundle(engine, args.image, context, bundle, checks["model_version"])
    except CheckError as exc:
        say(f"FAILED: {exc}")
        return 1
    report = {
        "image": args.image,
        "engine": Path(engine[0]).name,
        "size_bytes": size,
        "size_mb": round(size / 1e6, 1),
        "bundle": bundle.as_posix(),
        "checks": checks,
        "ui_size_mb": round(ui_size / 1e6, 1) if ui_size else None,
        "tested_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_report(args.report, report)
    say(f"passed; recorded in {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
