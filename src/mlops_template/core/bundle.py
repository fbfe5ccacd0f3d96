"""The model bundle: model files plus metadata.json, the serving contract, with checksums.

joblib files are pickles: nothing is unpickled before its sha256 matches the metadata.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as pkg_metadata
from pathlib import Path
from typing import Any

import joblib

from mlops_template.core.errors import UserError
from mlops_template.core.fsutil import atomic_dir, sha256_file, write_text

METADATA = "metadata.json"
MODEL_FILE = "model.joblib"
FORMAT_VERSION = 1
PENDING, VALIDATED, REJECTED = "PENDING", "VALIDATED", "REJECTED"
# Pickles are only portable within a minor version of these libraries.
PINNED_LIBRARIES = ("scikit-learn", "numpy")
RECORDED_LIBRARIES = (*PINNED_LIBRARIES, "pandas", "scipy", "joblib", "skl2onnx", "onnxruntime")


@dataclass(frozen=True)
class Bundle:
    path: Path
    metadata: dict[str, Any]
    model: Any

    @property
    def verdict(self) -> str:
        return self.metadata.get("gate", {}).get("verdict", PENDING)

    @property
    def version(self) -> str:
        return self.metadata["model_version"]


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in RECORDED_LIBRARIES:
        try:
            versions[name] = pkg_metadata.version(name)
        except pkg_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"


def save_bundle(
    directory: str | Path, model: Any, metadata: dict[str, Any], extra_files: dict[str, Path] | None = None
) -> Path:
    """Write model + extra files + metadata (with their checksums) to `directory`, atomically."""
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        joblib.dump(model, tmp / MODEL_FILE, compress=3)
        for name, source in (extra_files or {}).items():
            shutil.copyfile(source, tmp / name)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.name != METADATA}
        metadata = {
            **metadata,
            "format_version": FORMAT_VERSION,
            "model_version": files[MODEL_FILE][:12],
            "files": files,
            "versions": library_versions(),
        }
        write_text(tmp / METADATA, dump_json(metadata))
    return directory


def read_metadata(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / METADATA
    if not path.is_file():
        raise UserError(f"{path}: missing; {directory} is not a model bundle (run `make pipeline`)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); rebuild the bundle with `make pipeline`") from None


def verify_files(directory: Path, metadata: dict[str, Any]) -> None:
    """Every file listed in the metadata exists and has the recorded sha256."""
    files = metadata.get("files") or {}
    if MODEL_FILE not in files:
        raise UserError(f"{directory / METADATA}: lists no {MODEL_FILE}; rebuild the bundle")
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            raise UserError(f"{path}: missing file listed in {METADATA}; rebuild or re-copy the bundle")
        actual = sha256_file(path)
        if actual != expected:
            raise UserError(
                f"{path}: checksum mismatch (sha256 {actual[:12]}… != {expected[:12]}… in {METADATA}); "
                "the file was changed or corrupted: refusing to load it"
            )


def check_versions(metadata: dict[str, Any], directory: Path) -> None:
    recorded = metadata.get("versions", {})
    current = library_versions()
    for name in PINNED_LIBRARIES:
        want, have = recorded.get(name), current.get(name)
        if want and have and want.split(".")[:2] != have.split(".")[:2]:
            raise UserError(
                f"{directory}: trained with {name} {want} but {have} is installed; "
                f"install {name}=={want} (requirements.txt) or retrain"
            )


def load_bundle(directory: str | Path, allow: tuple[str, ...] = (VALIDATED,)) -> Bundle:
    """Verify and load a bundle whose gate verdict is in `allow` (serving accepts VALIDATED only)."""
    directory = Path(directory)
    metadata = read_metadata(directory)
    verdict = metadata.get("gate", {}).get("verdict", PENDING)
    if verdict not in allow:
        raise UserError(
            f"{directory}: gate verdict is {verdict}, expected {' or '.join(allow)}; "
            + ("the gate rejected this model, see reports/gate.md" if verdict == REJECTED else "run `make gate`")
        )
    verify_files(directory, metadata)
    check_versions(metadata, directory)
    return Bundle(path=directory, metadata=metadata, model=joblib.load(directory / MODEL_FILE))
