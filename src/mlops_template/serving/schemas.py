"""What /docs shows: the response and error models, and the /predict request body built from the contract.

Responses are built as plain dicts on the hot path; these models document them (OpenAPI) and let schema
checks (schemathesis) validate them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from mlops_template.serving.contract import Contract


class ErrorDetail(BaseModel):
    row: int | None = Field(None, description="index of the record in the request (0-based)")
    field: str | None = Field(None, description="the feature (request field) at fault")
    message: str
    type: str | None = None


class ErrorResponse(BaseModel):
    error: str = Field(description="machine-readable code, e.g. invalid_records, invalid_json, body_too_large")
    message: str
    details: list[ErrorDetail] = []
    request_id: str


class Status(BaseModel):
    status: str


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    variant: str
    model_version: str
    runtime: Literal["onnx", "sklearn"]
    task: str
    target: str
    estimator: str | None
    classes: list[str] | None
    metrics: dict[str, Any] | None
    gate: dict[str, Any]
    onnx: dict[str, Any] | None
    features: list[dict[str, Any]]
    example: dict[str, Any] | None = Field(None, description="a real training row: a valid /predict body")
    training_data: dict[str, Any] | None
    git_commit: str | None = Field(None, description="the commit the service was built from (GIT_COMMIT)")
    model_committed_at: str | None = Field(
        None,
        description="ISO 8601 UTC time of the first commit whose dvc.lock records the bundle (MODEL_COMMITTED_AT); "
        "the model was trained before it (a bundle records no clock time: rebuilds are byte-identical); null: unknown",
    )


def predict_response_model(contract: Contract) -> type[BaseModel]:
    flags = {
        "out_of_range": (list[str], Field(description="features whose value lies outside the training range")),
        "unknown_categories": (list[str], Field(description="features whose category was not seen in training")),
    }
    if contract.task == "regression":
        row = create_model("RowPrediction", prediction=(float, Field(description="predicted value")), **flags)
    else:
        probabilities = create_model(
            "Probabilities",
            __config__=ConfigDict(extra="forbid"),
            **{f"p{i}": (float, Field(alias=c, ge=0.0, le=1.0)) for i, c in enumerate(contract.classes)},
        )
        row = create_model(
            "RowPrediction",
            prediction=(Literal[tuple(contract.classes)], Field(description="predicted class")),
            probabilities=(probabilities, Field(description="probability per class")),
            **flags,
        )
    return create_model(
        "PredictResponse",
        __config__=ConfigDict(protected_namespaces=()),
        model_version=(str, ...),
        variant=(str, ...),
        runtime=(Literal["onnx", "sklearn"], ...),
        request_id=(str, ...),
        feedback_key=(
            str,
            Field(
                description="the request_id to POST /feedback with: the request id for one record (a JSON object); "
                "for a batch (a JSON array) `<request_id>:{row}`, where {row} is the 0-based index of the record"
            ),
        ),
        predictions=(list[row], Field(description="one entry per record, in request order")),
    )


def predict_request_body(example: dict[str, Any], max_batch_rows: int) -> dict[str, Any]:
    """The /predict requestBody: one Record or an array of them (Record is added to the document by the app)."""
    return {
        "required": True,
        "description": "One record (a JSON object) or a batch (a JSON array of at most "
        f"{max_batch_rows} records). Every feature is required; null only where the description allows.",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/Record"},
                        {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Record"},
                            "minItems": 1,
                            "maxItems": max_batch_rows,
                        },
                    ]
                },
                "examples": {
                    "one record": {"summary": "one record (a row of the training data)", "value": example},
                    "batch": {"summary": "a batch of two records", "value": [example, example]},
                },
            }
        },
    }


RATE_LIMITED = {
    429: {
        "model": ErrorResponse,
        "description": "rate limit of this client exceeded (monitoring.rate_limit); retry after Retry-After seconds",
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    }
}
ERRORS = {
    **RATE_LIMITED,
    400: {"model": ErrorResponse, "description": "malformed JSON or headers"},
    413: {"model": ErrorResponse, "description": "body larger than MAX_BODY_BYTES (checked before parsing)"},
    422: {
        "model": ErrorResponse,
        "description": "records that break the contract (field and row named), or more records than MAX_BATCH_ROWS",
    },
}
