"""The bundle as an MLflow Model: the scikit-learn flavour (pyfunc loads it) plus the bundle's own files.

`mlflow.pyfunc.load_model` and `mlflow models serve` use the sklearn flavour (skops format: safe to load);
the verified bundle (metadata.json, model.joblib, ONNX, profile) rides along in `extra_files/`, which is
what this project's service downloads for MODEL_URI and checks exactly as it checks a folder.
"""

from __future__ import annotations

from importlib import metadata as pkg_metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd

from mlops_template.core.bundle import METADATA, REJECTED, VALIDATED, BundleMetadata, load_bundle

NAME = "model"
BUNDLE_SUBDIR = "extra_files"  # where mlflow.sklearn puts `extra_files`
MODEL_LIBRARIES = ("scikit-learn", "numpy", "pandas", "scipy", "joblib")


def signature(metadata: BundleMetadata) -> Any:
    """Inputs from the bundle's feature contract: numeric -> double, categorical -> string; all may be missing."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    columns = [
        ColSpec("double" if f.type == "numeric" else "string", f.name, required=False) for f in metadata.features
    ]
    return ModelSignature(inputs=Schema(columns))


def input_example(metadata: BundleMetadata) -> pd.DataFrame:
    """The bundle's example row, typed like the signature."""
    row = metadata.example
    return pd.DataFrame(
        {
            f.name: pd.Series([row.get(f.name)], dtype="float64" if f.type == "numeric" else "object")
            for f in metadata.features
        }
    )


def requirements(metadata: BundleMetadata) -> list[str]:
    """The model libraries at the versions the bundle was trained with (no slow inference of requirements)."""
    recorded = metadata.versions
    pins = [f"{name}=={recorded[name]}" for name in MODEL_LIBRARIES if recorded.get(name)]
    return [*pins, *(f"{name}=={pkg_metadata.version(name)}" for name in ("mlflow", "skops"))]


def trusted_types(model: Any) -> list[str]:
    """The types skops may rebuild when loading: those of scikit-learn and numpy that this model uses, nothing else."""
    import skops.io

    found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    return [name for name in found if name.split(".")[0] in ("sklearn", "numpy")]


def _arguments(bundle_dir: Path) -> tuple[Any, dict[str, Any]]:
    bundle = load_bundle(bundle_dir, allow=(VALIDATED, REJECTED))  # checksums verified before unpickling
    files = [str(bundle_dir / name) for name in (*bundle.metadata.files, METADATA)]
    return bundle.model, {
        "signature": signature(bundle.metadata),
        "input_example": input_example(bundle.metadata),
        "pip_requirements": requirements(bundle.metadata),
        "extra_files": files,
        "metadata": {"model_version": bundle.version, "gate_verdict": bundle.verdict},
        "skops_trusted_types": trusted_types(bundle.model),
    }


def log(bundle_dir: Path, run_id: str) -> Any:
    """Log the judged bundle into the run; returns MLflow's ModelInfo (its model_uri is what gets registered).

    This is `mlflow.sklearn.log_model` (which calls `Model.log` with the sklearn flavour) minus one step: MLflow
    would load the model it just saved and predict the input example, only to log a warning if that failed,
    which cost the gate 0.3 s of CPU and more under load. The tests load and serve the logged model for real.
    """
    import mlflow.sklearn
    from mlflow.models import Model

    def save_model(validate_serving_input: bool = True, **kwargs: Any) -> None:
        mlflow.sklearn.save_model(**kwargs)  # `Model.log` passes its own option on to the flavour

    flavor = SimpleNamespace(__name__=mlflow.sklearn.__name__, save_model=save_model)
    model, arguments = _arguments(bundle_dir)
    return Model.log(None, flavor, name=NAME, run_id=run_id, sk_model=model, validate_serving_input=False,
                     serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS, **arguments)  # fmt: skip


def save(bundle_dir: Path, output: Path) -> Path:
    """The same MLflow Model written to a folder (for `mlflow models serve -m` and the serving benchmark)."""
    import mlflow.sklearn

    model, arguments = _arguments(bundle_dir)
    mlflow.sklearn.save_model(model, str(output), **arguments)
    return output
