"""The committed dvc.lock matches the committed code and params.yaml: a fresh clone's `make run` then re-runs
nothing and leaves `git status` clean (a stale lock re-trains on every clone and dirties it)."""

from __future__ import annotations

import hashlib
from typing import Any

from ruamel.yaml import YAML  # DVC's own YAML (1.2: `1e-05` is a number, as DVC wrote it)

from tests.conftest import ROOT

FIX = "run `make pipeline` and commit dvc.lock"


def load(name: str) -> dict[str, Any]:
    return YAML(typ="safe").load((ROOT / name).read_text(encoding="utf-8"))


def lock_stages() -> dict[str, Any]:
    return load("dvc.lock")["stages"]


def dotted(tree: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


def test_every_source_dependency_in_dvc_lock_is_the_committed_file():
    stale = [
        f"{name}: {dep['path']}"
        for name, stage in lock_stages().items()
        for dep in stage.get("deps", [])
        if dep["path"].startswith("src/") and hashlib.md5((ROOT / dep["path"]).read_bytes()).hexdigest() != dep["md5"]
    ]
    assert not stale, f"dvc.lock is stale for {stale}: {FIX}"


def test_every_parameter_in_dvc_lock_is_params_yaml():
    params = load("params.yaml")
    stale = [
        f"{name}: {key}"
        for name, stage in lock_stages().items()
        for key, value in stage.get("params", {}).get("params.yaml", {}).items()
        if dotted(params, key) != value
    ]
    assert not stale, f"dvc.lock records other values of {stale}: {FIX}"
