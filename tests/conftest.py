"""Shared test helpers. External tools: skipped locally when absent, a failure in CI (CI=true)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str, hint: str = "") -> str:
    """Path of an external command; skip when missing, except in CI where it must be installed."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not found on PATH{': ' + hint if hint else ''}"
    if IN_CI:
        pytest.fail(f"{message} (CI must install it: see .ci/run)")
    pytest.skip(message)


@pytest.fixture
def root() -> Path:
    return ROOT
