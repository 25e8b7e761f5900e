"""The documents a scan's result is written as: our JSON, and a FHIR report when asked."""

from __future__ import annotations

from typing import Any

import orjson

from medfn.pipeline.analysis import Analysis
from medfn.pipeline.types import ObjectRef


def result_document(ref: ObjectRef, analysis: Analysis, processed_at: str) -> dict[str, Any]:
    """What `results/<key>.json` holds: the prediction and what links it to its upload."""
    return {
        "source": {
            "bucket": ref.bucket,
            "key": ref.key,
            "version_id": ref.version_id,
            "etag": ref.etag,
        },
        "model": {"name": analysis.model, "version": analysis.model_version},
        "media_type": analysis.media_type,
        "prediction": analysis.body,
        "inference_ms": round(analysis.inference_ms, 3),
        "processed_at": processed_at,
    }


def render(ref: ObjectRef, analysis: Analysis, processed_at: str, formats: tuple[str, ...]) -> dict[str, bytes]:
    """File suffix -> bytes, for every format asked for: ".json", ".fhir.json"."""
    documents = {".json": orjson.dumps(result_document(ref, analysis, processed_at), option=orjson.OPT_INDENT_2)}
    if "fhir" in formats:
        from medfn.pipeline.fhir import diagnostic_report  # fhir.resources (pydantic): only when asked

        documents[".fhir.json"] = diagnostic_report(ref, analysis, processed_at)
    return documents
