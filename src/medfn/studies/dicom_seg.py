"""A model's label map as a DICOM Segmentation (highdicom) in the source study, in a new series.

The mask is a uint8 label map aligned with `volume.hu`: value k is segment k, 0 is background.
The SEG is BINARY with one segment per finding class; its frames reference the source images
they were derived from (each slice's instance, or for an enhanced multi-frame source its frame),
and it carries the patient and study modules of the source, so a PACS files it with the study.

An all-zero mask still gives a valid SEG: highdicom cannot omit every frame, so it is then written
with every frame (empty), and a reader gets an empty mask for every source slice.

UIDs (series, instance, dimension organisation) derive from `uid_seed`: the same seed rewrites the
same SEG. Only the creation times (content, instance, contributing equipment) differ.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from medfn.errors import UnprocessableInput
from medfn.studies import provenance

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from medfn.studies.volume import Volume

# SNOMED CT codes for the findings our models name; anything else is coded as a lesion.
_FINDING_TYPES = {
    "nodule": ("27925004", "Nodule"),
    "mass": ("4147007", "Mass"),
    "lesion": ("52988006", "Lesion"),
}


def segmentation(
    volume: Volume,
    mask: np.ndarray,
    *,
    model_name: str,
    model_version: str | int,
    finding_label: str | Sequence[str],
    uid_seed: str,
) -> Dataset:
    """A DICOM SEG of `mask` (uint8, volume.shape) over the volume's source images.

    `finding_label` names the segments: one string names segment 1 (or "label k" for each k up to
    the mask's largest value); a sequence names segment k by its item k-1 and fixes their number.
    """
    import highdicom

    labels = _segment_labels(mask, volume, finding_label)
    sources, pixels = _sources_and_pixels(volume, mask)
    descriptions = [_description(k, label, model_name, model_version) for k, label in enumerate(labels, start=1)]
    empty = not mask.any()
    try:
        seg = highdicom.seg.Segmentation(
            source_images=sources,
            pixel_array=pixels,
            segmentation_type=highdicom.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=provenance.stable_uid(uid_seed, "seg", "series"),
            series_number=provenance.SEG_SERIES_NUMBER,
            sop_instance_uid=provenance.stable_uid(uid_seed, "seg", "instance"),
            instance_number=1,
            manufacturer=provenance.MANUFACTURER,
            manufacturer_model_name=model_name[:64],
            software_versions=provenance.software_version(),
            device_serial_number=provenance.device_serial(model_name, model_version),
            content_description=f"{model_name} {model_version}"[:64],
            content_label=_content_label(labels[0]),
            omit_empty_frames=not empty,  # all empty: keep every frame rather than have none
        )
    except Exception as exc:  # highdicom's text may quote the source's headers: none of it goes out
        raise UnprocessableInput(
            "the source series lacks what a DICOM Segmentation needs (image positions and orientation)"
        ) from exc
    seg.SeriesDescription = f"medfn {model_name} segmentation"[:64]
    _stable_dimension_uid(seg, provenance.stable_uid(uid_seed, "seg", "dimensions"))
    return seg


def _segment_labels(mask: np.ndarray, volume: Volume, finding_label: str | Sequence[str]) -> list[str]:
    if mask.shape != volume.shape or mask.dtype != np.uint8:
        raise ValueError(f"mask must be uint8 of the volume's shape {volume.shape}, not {mask.dtype} {mask.shape}")
    largest = int(mask.max(initial=0))
    if isinstance(finding_label, str):
        count = max(1, largest)
        return [finding_label] if count == 1 else [f"{finding_label} {k}" for k in range(1, count + 1)]
    labels = list(finding_label)
    if not labels or largest > len(labels):
        raise ValueError(f"the mask holds segment {largest}, but {len(labels)} labels name the segments")
    return labels


def _sources_and_pixels(volume: Volume, mask: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """The source images highdicom takes, and the mask in the order of their frames.

    highdicom pairs mask plane i with source image i (single-frame) or with frame i+1 of the one
    multi-frame source; the volume's slices are in position order, which is not always frame order.
    """
    if all(frame.frame is None for frame in volume.frames):
        return list(volume.datasets), mask  # one dataset per slice, already in slice order
    if len(volume.datasets) != 1 or any(frame.frame is None for frame in volume.frames):
        raise UnprocessableInput("a segmentation of a series of several multi-frame instances is not supported")
    source = volume.datasets[0]
    pixels = np.zeros((int(source.NumberOfFrames), *mask.shape[1:]), np.uint8)
    for k, frame in enumerate(volume.frames):
        pixels[(frame.frame or 1) - 1] = mask[k]
    return [source], pixels


def _description(number: int, label: str, model_name: str, model_version: str | int) -> Any:
    import highdicom
    from pydicom.sr.codedict import codes

    value, meaning = finding_type(label)
    return highdicom.seg.SegmentDescription(
        segment_number=number,
        segment_label=label[:64],
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=highdicom.sr.CodedConcept(value, "SCT", meaning),
        algorithm_type=highdicom.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=provenance.algorithm(model_name, model_version),
    )


def finding_type(label: str) -> tuple[str, str]:
    """The SNOMED CT (code, meaning) a finding label is coded as (unknown labels: Lesion)."""
    return _FINDING_TYPES.get(label.split(" ")[0].lower(), _FINDING_TYPES["lesion"])


def _content_label(label: str) -> str:
    """A Content Label (CS): upper-case letters, digits, space and underscore, at most 16."""
    text = re.sub(r"[^A-Z0-9_ ]", "_", label.upper())[:16].strip()
    return text or "MEDFN"


def _stable_dimension_uid(seg: Any, uid: str) -> None:
    # highdicom draws the Dimension Organization UID at random; a rewrite must not change it.
    for item in [*seg.get("DimensionOrganizationSequence", []), *seg.get("DimensionIndexSequence", [])]:
        item.DimensionOrganizationUID = uid
