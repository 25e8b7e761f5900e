"""What a series' result is written as, under results/<study>/<series>/: seg.dcm and sr.dcm (in the
source study, for the PACS), result.json (ours), and fhir.json when asked.

DICOM UIDs are derived from the series and its generation, so writing one generation again (a
redelivery) gives the same objects, and a later generation's objects replace them under new UIDs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from medfn.serving import Model, Prediction
from medfn.studies.volume import Volume


@dataclass(frozen=True)
class SeriesAnswer:
    volume: Volume
    prediction: Prediction
    model: Model
    body: dict[str, Any]  # the prediction in the task route's answer shape
    generation: int
    supersedes: int | None


def render_series(answer: SeriesAnswer, processed_at: str, formats: tuple[str, ...]) -> dict[str, bytes]:
    """Name (suffix to the series' key) -> bytes, for every document of the answer."""
    from medfn.studies.dicom_seg import segmentation
    from medfn.studies.dicom_sr import nodule_report
    from medfn.studies.writing import to_bytes

    volume, model = answer.volume, answer.model
    seed = f"{model.name}:{model.version}:{volume.study_instance_uid}:{volume.series_instance_uid}:{answer.generation}"
    documents: dict[str, bytes] = {}
    dicom: dict[str, dict[str, str]] = {}
    findings = answer.body.get(model.details_key, {}).get("findings", [])
    if answer.prediction.mask is not None:
        seg = segmentation(
            volume,
            answer.prediction.mask,
            model_name=model.name,
            model_version=model.version,
            finding_label=str(model.config.postprocessing.get("label", "nodule")),
            uid_seed=seed,
        )
        sr = nodule_report(volume, seg, findings, model_name=model.name, model_version=model.version, uid_seed=seed)
        documents["/seg.dcm"], documents["/sr.dcm"] = to_bytes(seg), to_bytes(sr)
        dicom = {name: _identity(ds) for name, ds in (("seg", seg), ("sr", sr))}
    result = {
        "series": {
            "study_instance_uid": volume.study_instance_uid,
            "series_instance_uid": volume.series_instance_uid,
            "slices": volume.shape[0],
            "generation": answer.generation,
            "supersedes": answer.supersedes,
        },
        "model": {"name": model.name, "version": model.version},
        "prediction": answer.body,
        "dicom": dicom,
        "processed_at": processed_at,
    }
    documents["/result.json"] = orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    if "fhir" in formats:
        from medfn.pipeline.fhir import series_report

        documents["/fhir.json"] = series_report(answer.body, model, volume.study_instance_uid, processed_at)
    return documents


def _identity(ds: Any) -> dict[str, str]:
    return {
        "sop_class_uid": str(ds.SOPClassUID),
        "sop_instance_uid": str(ds.SOPInstanceUID),
        "series_instance_uid": str(ds.SeriesInstanceUID),
    }
