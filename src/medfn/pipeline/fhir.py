"""A result as a FHIR R4 DiagnosticReport: one Observation per label (classification), the
lesion's area (segmentation), or each nodule's volume and diameter (a series).

Built and validated with `fhir.resources` (its R4B package: R4B leaves DiagnosticReport and
Observation as R4 defined them). The report names the image by its SOP Instance UID, the
upload by its key, and the study by a logical ImagingStudy reference (its Study Instance UID),
and carries no patient: linking to a Patient is the consumer's business.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medfn.pipeline.types import ObjectRef

if TYPE_CHECKING:
    from medfn.pipeline.analysis import Analysis
    from medfn.serving import Model

_DICOM_UID_SYSTEM = "urn:dicom:uid"
_UPLOAD_SYSTEM = "urn:medfn:upload"
_IMAGING = {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology"}


def diagnostic_report(
    ref: ObjectRef, analysis: Analysis, processed_at: str, study_instance_uid: str | None = None
) -> bytes:
    """One scan's report as JSON bytes; raises if fhir.resources finds it invalid."""
    body = analysis.body
    identifiers: list[dict[str, Any]] = [{"system": _UPLOAD_SYSTEM, "value": f"{ref.uri}#{ref.identity}"}]
    if body.get("sop_instance_uid"):
        identifiers.append({"system": _DICOM_UID_SYSTEM, "value": f"urn:oid:{body['sop_instance_uid']}"})
    method = f"{analysis.model} version {analysis.model_version}"
    mask = body.get("mask")  # segmentation: the finding's size is what a report states, not a class
    if mask is None:
        observations = [
            _observation(f"label-{i}", str(label), float(p), "1", method, processed_at)
            for i, (label, p) in enumerate(body["probabilities"].items())
        ]
        conclusion = f"most likely: {body['label']}" if body.get("label") else None
    else:
        finding = next(iter(body["probabilities"]), "segmented region")
        area = mask.get("area_mm2")
        observations = (
            [] if area is None else [_observation("area", f"{finding} area", area, "mm2", method, processed_at)]
        )
        conclusion = None if area is None else f"{finding}: {float(area):g} mm2"
    return _report(identifiers, method, observations, conclusion, study_instance_uid, processed_at)


def series_report(body: dict[str, Any], model: Model, study_instance_uid: str, processed_at: str) -> bytes:
    """A series' report: each finding's volume and longest axial diameter."""
    method = f"{model.name} version {model.version}"
    findings = body.get(model.details_key, {}).get("findings", [])
    observations = []
    for i, finding in enumerate(findings, start=1):
        observations += [
            _observation(
                f"finding-{i}-volume", f"finding {i} volume", finding["volume_ml"], "mL", method, processed_at
            ),
            _observation(
                f"finding-{i}-diameter",
                f"finding {i} longest axial diameter",
                finding["longest_axial_diameter_mm"],
                "mm",
                method,
                processed_at,
            ),
        ]
    conclusion = f"{len(findings)} finding(s): {body.get('label')}" if findings else "nothing found"
    return _report([], method, observations, conclusion, study_instance_uid, processed_at)


def _report(
    identifiers: list[dict[str, Any]],
    method: str,
    observations: list[dict[str, Any]],
    conclusion: str | None,
    study_instance_uid: str | None,
    processed_at: str,
) -> bytes:
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": "preliminary",  # a model's output, for a clinician to confirm
        "category": [{"coding": [_IMAGING]}],
        "code": {"text": method},
        "issued": processed_at,
        "contained": observations,
        "result": [{"reference": f"#{o['id']}"} for o in observations],
    }
    if identifiers:
        report["identifier"] = identifiers
    if study_instance_uid:  # a logical reference: the PACS holds the study, FHIR need not copy it
        uid = {"system": _DICOM_UID_SYSTEM, "value": f"urn:oid:{study_instance_uid}"}
        report["imagingStudy"] = [{"type": "ImagingStudy", "identifier": uid}]
    if conclusion:
        report["conclusion"] = conclusion
    return DiagnosticReport.model_validate(report).model_dump_json(indent=2).encode("utf-8")


def _observation(id_: str, name: str, value: float, ucum: str, method: str, processed_at: str) -> dict[str, Any]:
    unit = {"1": "probability"}.get(ucum, ucum)
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "preliminary",
        "code": {"text": name},
        "valueQuantity": {"value": float(value), "unit": unit, "system": "http://unitsofmeasure.org", "code": ucum},
        "method": {"text": method},
        "issued": processed_at,
    }
