"""The environment handed to CI runners that tests start (act, gitlab-ci-local)."""

from __future__ import annotations

import os

import pytest

from tests.act_support import nested_ci_env


def test_nested_ci_runs_inherit_neither_this_ci_nor_its_coverage(monkeypatch: pytest.MonkeyPatch) -> None:
    # CI failed at 63 % coverage: a gitlab-ci-local job's venv recorded the copied repository's src/
    inherited = {"CI", "GITLAB_CI", "COVERAGE_PROCESS_CONFIG", "COV_CORE_SOURCE"}
    for name in inherited:
        monkeypatch.setenv(name, "true")
    env = nested_ci_env(ACT_HOME="/tmp/home")
    assert not inherited & env.keys()
    assert env["ACT_HOME"] == "/tmp/home"
    assert env["PATH"] == os.environ["PATH"]
