"""Pydantic models of what the routes send and take, so that /docs tells the truth."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ErrorBody(BaseModel):
    error: str


class ModelRow(BaseModel):
    name: str
    version: str
    task: str
    function: str
    ready: bool
    reason: str = ""


class ModelList(BaseModel):
    models: list[ModelRow]


class PredictResponse(BaseModel):
    """Every task's answer; each task adds its own details under one key (mask, risk, text, records)."""

    model_config = ConfigDict(extra="allow")
    model: str
    model_version: str
    request_id: str
    inference_ms: float
    label: str | None
    probabilities: dict[str, float]
    warnings: list[str]
    notice: str | None = None
    sop_instance_uid: str | None = None


class ExplanationBody(BaseModel):
    """How the answer came about. `method`: grad-cam, occlusion or probability-map (scans: `details`
    has the low-resolution `map`, `map_shape` and the overlay as `overlay_png_base64`),
    leave-one-out (notes: `tokens` with weights), baseline-replacement (records: `features`)."""

    method: str
    details: dict[str, Any]


class ExplainResponse(PredictResponse):
    """The prediction, as `/predict` answers it, and `explanation`."""

    explanation: ExplanationBody


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = {}


class ModelReady(BaseModel):
    name: str
    ready: bool


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]
