"""A scan's result as a FHIR R4 DiagnosticReport: one Observation per label (classification)
or the lesion's area (segmentation).

Built and validated with `fhir.resources` (its R4B package: R4B leaves DiagnosticReport and
Observation as R4 defined them). The report names the image by its SOP Instance UID and the
upload by its key, and carries no patient: linking to a Patient is the consumer's business.
"""

from __future__ import annotations

from typing import Any

from medfn.pipeline.analysis import Analysis
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
    observations = [
        _observation(
            f"label-{i}", str(entry["label"]), float(entry["probability"]), "probability", "1", analysis, processed_at
        )
        for i, entry in enumerate(body.get("labels", []))
    ]
    if "area_mm2" in body:  # segmentation: the finding's size is what a report states
        name = f"{body.get('label', 'segmented region')} area"
        observations.append(_observation("area", name, float(body["area_mm2"]), "mm2", "mm2", analysis, processed_at))
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
    elif "area_mm2" in body:
        report["conclusion"] = f"{body.get('label', 'segmented region')}: {float(body['area_mm2']):g} mm2"
    return DiagnosticReport.model_validate(report).model_dump_json(indent=2).encode("utf-8")


def _observation(
    id_: str, name: str, value: float, unit: str, ucum: str, analysis: Analysis, processed_at: str
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "preliminary",
        "code": {"text": name},
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": ucum},
        "method": {"text": f"{analysis.model} version {analysis.model_version}"},
        "issued": processed_at,
    }
