"""The documents a scan's result is written as: our JSON, a DICOM SR for a DICOM scan that a model
classified (so a PACS files the answer in the scan's study), and a FHIR report when asked."""

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
    """File suffix -> bytes: ".json"; ".sr.dcm" for a DICOM scan with class probabilities;
    ".fhir.json" when asked; explained, ".explain.png" (the map over the scan) and for a DICOM
    scan ".explain.dcm", that overlay as a Secondary Capture in the scan's study."""
    documents = {".json": orjson.dumps(result_document(ref, analysis, processed_at), option=orjson.OPT_INDENT_2)}
    if analysis.overlay:
        documents[".explain.png"] = analysis.overlay
    study_instance_uid = None
    if analysis.dicom:
        from medfn.studies.dicom_sr import classification_report  # highdicom: DICOM scans only
        from medfn.studies.writing import read_dataset, to_bytes

        source = read_dataset(analysis.dicom)
        study_instance_uid = str(source.StudyInstanceUID)
        body = analysis.body
        if body.get("probabilities") and body.get("label"):
            report = classification_report(
                source,
                label=str(body["label"]),
                probabilities={str(k): float(v) for k, v in body["probabilities"].items()},
                model_name=analysis.model,
                model_version=analysis.model_version,
                uid_seed=f"{ref.uri}#{ref.identity}:{analysis.model}:{analysis.model_version}",
            )
            documents[".sr.dcm"] = to_bytes(report)
        if analysis.overlay:
            from medfn.studies.secondary_capture import explanation_capture

            capture = explanation_capture(
                source,
                analysis.overlay,
                method=analysis.method,
                model_name=analysis.model,
                model_version=analysis.model_version,
                uid_seed=f"{ref.uri}#{ref.identity}:{analysis.model}:{analysis.model_version}",
            )
            documents[".explain.dcm"] = to_bytes(capture)
    if "fhir" in formats:
        from medfn.pipeline.fhir import diagnostic_report  # fhir.resources (pydantic): only when asked

        documents[".fhir.json"] = diagnostic_report(ref, analysis, processed_at, study_instance_uid)
    return documents
