"""A scan's result as a FHIR R4 DiagnosticReport with one Observation per label.

Built and validated with `fhir.resources` (its R4B package: R4B leaves DiagnosticReport and
Observation as R4 defined them). The report names the image by its SOP Instance UID and the
upload by its key, and carries no patient: linking to a Patient is the consumer's business.
"""

from __future__ import annotations

from typing import Any

from medfn.pipeline.core import Analysis
from medfn.pipeline.types import ObjectRef

_DICOM_UID_SYSTEM = "urn:dicom:uid"
_UPLOAD_SYSTEM = "urn:medfn:upload"
_IMAGING = {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology"}


def diagnostic_report(ref: ObjectRef, analysis: Analysis, processed_at: str) -> bytes:
    """The report as JSON bytes; raises if fhir.resources finds it invalid."""
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    body = analysis.body
    identifiers: list[dict[str, Any]] = [{"system": _UPLOAD_SYSTEM, "value": f"{ref.uri}#{ref.identity}"}]
    if body.get("sop_instance_uid"):
        identifiers.append({"system": _DICOM_UID_SYSTEM, "value": f"urn:oid:{body['sop_instance_uid']}"})
    observations = [_observation(i, entry, analysis, processed_at) for i, entry in enumerate(body.get("labels", []))]
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": "preliminary",  # a model's output, for a clinician to confirm
        "category": [{"coding": [_IMAGING]}],
        "code": {"text": f"{analysis.model} version {analysis.model_version}"},
        "identifier": identifiers,
        "issued": processed_at,
        "contained": observations,
        "result": [{"reference": f"#{o['id']}"} for o in observations],
    }
    if "top_label" in body:
        report["conclusion"] = f"most likely: {body['top_label']}"
    return DiagnosticReport.model_validate(report).model_dump_json(indent=2).encode("utf-8")


def _observation(index: int, entry: dict[str, Any], analysis: Analysis, processed_at: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"label-{index}",
        "status": "preliminary",
        "code": {"text": str(entry["label"])},
        "valueQuantity": {"value": float(entry["probability"]), "unit": "probability", "system": "http://unitsofmeasure.org", "code": "1"},
        "method": {"text": f"{analysis.model} version {analysis.model_version}"},
        "issued": processed_at,
    }
