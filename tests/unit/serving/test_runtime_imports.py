"""The serving image has no training-only packages: serving imports and serves a bundle without them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT
from tests.serving_helpers import build_bundle

TRAINING_ONLY = ("skl2onnx", "onnx", "dvc", "matplotlib")  # requirements-dev.txt only; onnxruntime stays

SERVE_WITHOUT_THEM = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    from pathlib import Path

    BLOCKED = set(sys.argv[2].split(","))

    class TrainingOnly:
        '''A meta-path finder: importing a training-only package fails as if it were not installed.'''

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (not in the serving image)", name=name)
            return None

    sys.meta_path.insert(0, TrainingOnly())
    import mlops_template.cli  # what the image runs: `python -m mlops_template serve`
    import mlops_template.serving as serving
    for module in pkgutil.iter_modules(serving.__path__, "mlops_template.serving."):
        importlib.import_module(module.name)
    from fastapi.testclient import TestClient
    from mlops_template.serving.app import create_app
    from mlops_template.serving.settings import Settings

    bundle = Path(sys.argv[1])
    example = json.loads((bundle / "metadata.json").read_text())["example"]
    client = TestClient(create_app(Settings(model_dir=bundle)))
    answer = client.post("/predict", json=example)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    blocked = []  # proof that the finder is active: each package really cannot be imported here
    for name in sorted(BLOCKED):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if "not in the serving image" in str(exc):
                blocked.append(name)
    print(json.dumps({"status": answer.status_code, "runtime": answer.json().get("runtime"), "loaded": loaded,
                      "blocked": blocked}))
    """
)


def test_serving_imports_and_serves_without_training_only_packages(tmp_path: Path) -> None:
    bundle = build_bundle(tmp_path)  # trained here, with skl2onnx: the subprocess below serves it without
    result = subprocess.run([sys.executable, "-c", SERVE_WITHOUT_THEM, str(bundle), ",".join(TRAINING_ONLY)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"status": 200, "runtime": "onnx", "loaded": [], "blocked": sorted(TRAINING_ONLY)}
