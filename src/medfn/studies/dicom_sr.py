"""Model results as DICOM Structured Reports (TID 1500 Measurement Report) in the source study.

nodule_report: a Comprehensive 3D SR with one volumetric ROI group (TID 1411) per finding. Each
    group is tracked as "Nodule k" (with a stable UID), references its segment of the SEG (and
    the SEG frames over the finding's slices), and holds the finding's volume (SCT 118565006
    Volume, UCUM ml) and longest axial diameter (SCT 103339001 Long axis, UCUM mm). With no
    finding, one group (TID 1501) says "Nodule: Absent" (SCT 27925004 = SCT 272519000): highdicom
    needs at least one group, and a reader sees that the search ran and found none.
classification_report: a Comprehensive SR for a single-image classifier: one group (TID 1501)
    per class with its probability (DCM 122157 Probability, UCUM "1"), each referencing the
    source image; the answer's group also says "<label>: Present" (SCT 52101004), as the nodule
    report says "Nodule: Absent". (Not "Finding: <label>": DCM 121071 Finding is the concept
    name highdicom already gives the group's finding type.) Labels are model-specific, so they are
    coded in the private scheme 99MEDFN.

Both inherit the patient and study modules from their evidence (highdicom), take a new series,
are observed by a device "medfn <model>", and take their UIDs from `uid_seed`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from medfn.studies import provenance

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from medfn.studies.volume import Volume

PRIVATE_SCHEME = "99MEDFN"  # "99" marks a private coding scheme (PS3.16 8.2)


def nodule_report(
    volume: Volume,
    seg_dataset: Dataset,
    findings: Sequence[Mapping[str, Any]],
    *,
    model_name: str,
    model_version: str | int,
    uid_seed: str,
) -> Dataset:
    """A TID 1500 report of `findings` ({"volume_ml", "longest_axial_diameter_mm", "slice_range":
    [first, last] volume slices (inclusive), optional "segment": the SEG segment, default 1})."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if seg_dataset.StudyInstanceUID != volume.study_instance_uid:
        raise ValueError("the segmentation belongs to another study than the volume")
    algorithm = provenance.sr_algorithm(model_name, model_version)
    nodule = codes.SCT.Nodule
    groups: list[Any] = []
    for k, finding in enumerate(findings, start=1):
        segment = int(finding.get("segment", 1))
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=provenance.stable_uid(uid_seed, "sr", "nodule", str(k)), identifier=f"Nodule {k}"
                ),
                referenced_segment=_segment_reference(seg_dataset, volume, segment, finding.get("slice_range")),
                finding_type=nodule,
                finding_category=codes.SCT.MorphologicallyAbnormalStructure,
                algorithm_id=algorithm,
                measurements=[
                    hd.sr.Measurement(
                        name=codes.SCT.Volume,
                        value=_number(finding, "volume_ml"),
                        unit=hd.sr.CodedConcept("ml", "UCUM", "milliliter"),
                        algorithm_id=algorithm,
                    ),
                    hd.sr.Measurement(
                        name=codes.SCT.LongAxis,
                        value=_number(finding, "longest_axial_diameter_mm"),
                        unit=codes.UCUM.Millimeter,
                        algorithm_id=algorithm,
                    ),
                ],
            )
        )
    if not groups:
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=provenance.stable_uid(uid_seed, "sr", "nodule", "none"), identifier="Nodule search"
                ),
                finding_type=nodule,
                finding_category=codes.SCT.MorphologicallyAbnormalStructure,
                algorithm_id=algorithm,
                qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=nodule, value=codes.SCT.Absent)],
            )
        )
    report = _report(groups, codes.LN.CTUnspecifiedBodyRegion, model_name, model_version, uid_seed)
    return _document(
        hd.sr.Comprehensive3DSR,
        [*volume.datasets, seg_dataset],
        report,
        series=("nodule", provenance.NODULE_SR_SERIES_NUMBER),
        model_name=model_name,
        uid_seed=uid_seed,
    )


def classification_report(
    source: Dataset,
    *,
    label: str,
    probabilities: Mapping[str, float],
    model_name: str,
    model_version: str | int,
    uid_seed: str,
) -> Dataset:
    """A TID 1500 report of one image's class `label` and each class's probability."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if label not in probabilities:
        raise ValueError("the label must be one of the classes given probabilities")
    source = provenance.fill_filing_attributes(source)
    frames = [1] if int(source.get("NumberOfFrames", 1) or 1) > 1 else None  # the frame the model saw
    image = hd.sr.SourceImageForMeasurementGroup.from_source_image(source, referenced_frame_numbers=frames)
    algorithm = provenance.sr_algorithm(model_name, model_version)
    groups = []
    for k, (name, probability) in enumerate(sorted(probabilities.items(), key=lambda item: -item[1]), start=1):
        concept = label_concept(name)
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=provenance.stable_uid(uid_seed, "sr", "class", name), identifier=f"Class {k}"
                ),
                finding_type=concept,
                algorithm_id=algorithm,
                source_images=[image],
                measurements=[
                    hd.sr.Measurement(
                        name=codes.DCM.Probability,
                        value=_number({"probability": probability}, "probability"),
                        unit=codes.UCUM.NoUnits,
                        algorithm_id=algorithm,
                    )
                ],
                qualitative_evaluations=(
                    [hd.sr.QualitativeEvaluation(name=concept, value=codes.SCT.Present)] if name == label else None
                ),
            )
        )
    report = _report(groups, codes.SCT.ImagingProcedure, model_name, model_version, uid_seed)
    return _document(
        hd.sr.ComprehensiveSR,
        [source],
        report,
        series=("classification", provenance.CLASSIFICATION_SR_SERIES_NUMBER),
        model_name=model_name,
        uid_seed=uid_seed,
    )


def label_concept(label: str) -> Any:
    """A model's class label as a code of the private scheme: the label itself where it fits a
    Code Value (16 characters of letters, digits, space, '_', '.', '-'), else a digest of it."""
    import highdicom as hd

    fits = len(label) <= 16 and re.fullmatch(r"[A-Za-z0-9_.\- ]+", label)
    value = label if fits else "L" + hashlib.sha256(label.encode()).hexdigest()[:15]
    return hd.sr.CodedConcept(value, PRIVATE_SCHEME, label.replace("\\", "/")[:64] or value)


def _report(groups: list[Any], procedure: Any, model_name: str, model_version: str | int, uid_seed: str) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=provenance.stable_uid(uid_seed, "sr", "device"),
        name=f"medfn {model_name}"[:64],
        manufacturer_name=provenance.MANUFACTURER,
        model_name=model_name[:64],
        serial_number=provenance.device_serial(model_name, model_version),
    )
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.cid270.Device, observer_identifying_attributes=device
        )
    )
    return hd.sr.MeasurementReport(
        observation_context=context, procedure_reported=procedure, imaging_measurements=groups
    )


def _document(
    kind: Any, evidence: list[Any], report: Any, *, series: tuple[str, int], model_name: str, uid_seed: str
) -> Dataset:
    name, number = series
    sr: Dataset = kind(
        evidence=evidence,
        content=report[0],
        series_instance_uid=provenance.stable_uid(uid_seed, "sr", name, "series"),
        series_number=number,
        sop_instance_uid=provenance.stable_uid(uid_seed, "sr", name, "instance"),
        instance_number=1,
        manufacturer=provenance.MANUFACTURER,
        is_complete=True,
        is_final=False,  # PRELIMINARY: an unverified machine reading, for a reader to confirm
        is_verified=False,
    )
    sr.SeriesDescription = f"medfn {model_name} report"[:64]
    sr.ManufacturerModelName = model_name[:64]
    sr.SoftwareVersions = provenance.software_version()
    return sr


def _segment_reference(seg: Dataset, volume: Volume, segment: int, slice_range: Any) -> Any:
    """The segment, with the source images of the finding's slices (first..last, inclusive).

    Not narrowed to SEG frames: an SR image reference may name segments or frames, not both
    (dciodvfy: Referenced Segment Number "shall not be present" with Referenced Frame Number).
    Built by hand: highdicom's ReferencedSegment.from_segmentation looks for the segment number
    in each frame's functional groups, where highdicom itself does not put it when the SEG has a
    single segment (it goes in the shared groups).
    """
    import highdicom as hd

    common = {"sop_class_uid": seg.SOPClassUID, "sop_instance_uid": seg.SOPInstanceUID, "segment_number": segment}
    if slice_range is None:
        series = hd.sr.SourceSeriesForSegmentation(volume.series_instance_uid)
        return hd.sr.ReferencedSegment(**common, source_series=series)
    first, last = max(int(slice_range[0]), 0), min(int(slice_range[-1]), volume.shape[0] - 1)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in volume.datasets}
    frames_of: dict[str, list[int]] = {}
    for source in volume.frames[first : last + 1]:
        frames_of.setdefault(source.sop_instance_uid, []).extend([source.frame] if source.frame else [])
    images = [
        hd.sr.SourceImageForSegmentation.from_source_image(by_uid[uid], referenced_frame_numbers=frames or None)
        for uid, frames in frames_of.items()
    ]
    return hd.sr.ReferencedSegment(**common, source_images=images)


def _number(finding: Mapping[str, Any], key: str) -> float:
    value = float(finding[key])
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{key} must be a finite number >= 0")
    return value
