"""The comparison servers of `make bench-serve` (never shipped): the HTTP floor and a naive baseline.

- `floor`: a bare FastAPI endpoint that takes the same JSON body as /predict and does nothing with it.
- `baseline_app()`: what a plain FastAPI + pandas + scikit-learn service usually looks like: a DataFrame
  from the posted records, then the pipeline's predict_proba. BENCH_MODEL names the (verified) joblib file.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI

Records = dict[str, Any] | list[dict[str, Any]]

floor = FastAPI(title="HTTP floor")


@floor.get("/health")
async def floor_health() -> dict[str, str]:
    return {"status": "ok"}


@floor.post("/predict")
async def floor_predict(payload: Records) -> dict[str, Any]:
    return {"prediction": None, "rows": len(payload) if isinstance(payload, list) else 1}


def baseline_app() -> FastAPI:
    """Factory (uvicorn --factory): loads the model once at start."""
    import joblib
    import pandas as pd

    model = joblib.load(os.environ["BENCH_MODEL"])
    classes = [str(c) for c in getattr(model, "classes_", [])]
    app = FastAPI(title="FastAPI + pandas + sklearn baseline")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(payload: Records) -> dict[str, Any]:
        frame = pd.DataFrame(payload if isinstance(payload, list) else [payload])
        if not classes:
            return {"predictions": [{"value": float(v)} for v in model.predict(frame)]}
        proba = model.predict_proba(frame)
        return {
            "predictions": [
                {"prediction": classes[row.argmax()], "probabilities": dict(zip(classes, row.tolist(), strict=True))}
                for row in proba
            ]
        }

    return app
