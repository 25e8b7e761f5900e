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
    mask = body.get("mask")  # segmentation: the finding's size is what a report states, not a class
    finding = next(iter(body["probabilities"]), "segmented region")
    observations = [
        _observation(f"label-{i}", str(label), float(p), "probability", "1", analysis, processed_at)
        for i, (label, p) in enumerate(body["probabilities"].items())
        if mask is None
    ]
    area = mask.get("area_mm2") if mask else None
    if area is not None:
        observations.append(_observation("area", f"{finding} area", float(area), "mm2", "mm2", analysis, processed_at))
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
    if area is not None:
        report["conclusion"] = f"{finding}: {float(area):g} mm2"
    elif mask is None and body.get("label"):
        report["conclusion"] = f"most likely: {body['label']}"
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
