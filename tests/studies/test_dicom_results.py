"""DICOM SEG and SR results: valid (dciodvfy), readable (highdicom), in the source study, stable UIDs."""

from __future__ import annotations

import io
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

import medfn
from medfn.studies import Volume, build_volume, classification_report, nodule_report, segmentation
from tests.studies.helpers import PATIENT_NAME, dciodvfy_errors, enhanced, needs_dciodvfy, phantom_hu, series, to_bytes

REVERSED = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # frame order of the enhanced file runs against slice order
MODEL = {"model_name": "ct_nodule_volume", "model_version": "2"}
FINDINGS = [
    {"volume_ml": 0.0245, "longest_axial_diameter_mm": 7.0, "slice_range": [1, 2], "mean_probability": 0.9},
    {"volume_ml": 0.0049, "longest_axial_diameter_mm": 2.8, "slice_range": [4, 4]},
]


@pytest.fixture(scope="module", params=["single-frame", "enhanced"])
def volume(request: pytest.FixtureRequest) -> Volume:
    hu = phantom_hu()
    if request.param == "single-frame":
        return build_volume(series(hu, orientation=REVERSED))
    return build_volume([enhanced(hu, orientation=REVERSED)])


def nodule_mask(volume: Volume) -> np.ndarray:
    mask = np.zeros(volume.shape, np.uint8)
    mask[1:3, 10:15, 10:15] = 1
    mask[4, 20:24, 5:8] = 1
    return mask


def mask_back(seg: Any, volume: Volume) -> np.ndarray:
    """The SEG read back by highdicom as a label map, slice by slice in the volume's order."""
    read = hd.seg.segread(io.BytesIO(to_bytes(seg)))
    sources = volume.frames
    if sources[0].frame is None:
        return read.get_pixels_by_source_instance(
            [frame.sop_instance_uid for frame in sources], combine_segments=True, assert_missing_frames_are_empty=True
        )
    return read.get_pixels_by_source_frame(
        sources[0].sop_instance_uid,
        [frame.frame for frame in sources],
        combine_segments=True,
        assert_missing_frames_are_empty=True,
    )


def only_in_patient_module(ds: Any) -> None:
    """The source's patient name is in the file once: the Patient Name the Patient module requires."""
    assert str(ds.PatientName) == PATIENT_NAME
    assert to_bytes(ds).count(PATIENT_NAME.encode()) == 1


@needs_dciodvfy
def test_a_segmentation_is_valid_and_reads_back_as_the_mask(volume: Volume) -> None:
    mask = nodule_mask(volume)
    mask[3, 0:4, 0:4] = 2  # a second finding class
    seg = segmentation(volume, mask, **MODEL, finding_label=["Nodule", "Mass"], uid_seed="series-a:1")
    assert dciodvfy_errors(seg) == []
    assert np.array_equal(mask_back(seg, volume), mask)
    assert seg.StudyInstanceUID == volume.study_instance_uid
    assert seg.SeriesInstanceUID != volume.series_instance_uid
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["Nodule", "Mass"]
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "27925004"
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("medfn ct_nodule_volume", "2")
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert (seg.Manufacturer, seg.ManufacturerModelName) == ("medfn", "ct_nodule_volume")
    assert seg.SoftwareVersions == medfn.__version__
    only_in_patient_module(seg)


@needs_dciodvfy
def test_an_empty_mask_is_still_a_valid_segmentation(volume: Volume) -> None:
    mask = np.zeros(volume.shape, np.uint8)
    seg = segmentation(volume, mask, **MODEL, finding_label="nodule", uid_seed="series-a:1")
    assert dciodvfy_errors(seg) == []
    assert np.array_equal(mask_back(seg, volume), mask)
    assert len(seg.SegmentSequence) == 1


def test_segmentation_uids_are_stable_for_one_seed(volume: Volume) -> None:
    mask = nodule_mask(volume)

    def uids(seed: str) -> tuple[str, ...]:
        seg = segmentation(volume, mask, **MODEL, finding_label="Nodule", uid_seed=seed)
        return seg.SeriesInstanceUID, seg.SOPInstanceUID, seg.DimensionOrganizationSequence[0].DimensionOrganizationUID

    assert uids("series-a:1") == uids("series-a:1")
    assert set(uids("series-a:1")).isdisjoint(uids("series-a:2"))


def test_a_mask_that_does_not_fit_is_refused(volume: Volume) -> None:
    with pytest.raises(ValueError, match="uint8 of the volume's shape"):
        segmentation(volume, np.zeros((2, 3, 4), np.uint8), **MODEL, finding_label="Nodule", uid_seed="s")
    with pytest.raises(ValueError, match="2 labels name the segments"):
        mask = np.full(volume.shape, 3, np.uint8)
        segmentation(volume, mask, **MODEL, finding_label=["a", "b"], uid_seed="s")


def _report_groups(sr: Any) -> list[Any]:
    read = hd.sr.srread(io.BytesIO(to_bytes(sr)))
    return read.content.get_volumetric_roi_measurement_groups()


@needs_dciodvfy
def test_a_nodule_report_measures_each_finding_on_its_segment(volume: Volume) -> None:
    seg = segmentation(volume, nodule_mask(volume), **MODEL, finding_label="Nodule", uid_seed="series-a:1")
    sr = nodule_report(volume, seg, FINDINGS, **MODEL, uid_seed="series-a:1")
    assert dciodvfy_errors(sr) == []
    groups = _report_groups(sr)
    assert [group.tracking_identifier for group in groups] == ["Nodule 1", "Nodule 2"]
    for group, finding in zip(groups, FINDINGS, strict=True):
        (volume_ml,) = group.get_measurements(name=codes.SCT.Volume)
        (diameter,) = group.get_measurements(name=codes.SCT.LongAxis)
        assert (float(volume_ml.value), volume_ml.unit.value) == (finding["volume_ml"], "ml")
        assert (float(diameter.value), diameter.unit.value) == (finding["longest_axial_diameter_mm"], "mm")
        segment = group.referenced_segment
        assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
    sources = {item.referenced_sop_instance_uid for item in groups[1].referenced_segment.source_images_for_segmentation}
    assert sources == {volume.frames[4].sop_instance_uid}  # the finding's one slice (or the file holding it)
    assert sr.StudyInstanceUID == volume.study_instance_uid
    assert sr.SeriesInstanceUID not in (volume.series_instance_uid, seg.SeriesInstanceUID)
    only_in_patient_module(sr)
    again = nodule_report(volume, seg, FINDINGS, **MODEL, uid_seed="series-a:1")
    assert (again.SeriesInstanceUID, again.SOPInstanceUID) == (sr.SeriesInstanceUID, sr.SOPInstanceUID)


@needs_dciodvfy
def test_a_nodule_report_without_findings_says_none_were_found(volume: Volume) -> None:
    seg = segmentation(volume, np.zeros(volume.shape, np.uint8), **MODEL, finding_label="Nodule", uid_seed="b")
    sr = nodule_report(volume, seg, [], **MODEL, uid_seed="b")
    assert dciodvfy_errors(sr) == []
    read = hd.sr.srread(io.BytesIO(to_bytes(sr)))
    assert read.content.get_volumetric_roi_measurement_groups() == []
    (group,) = read.content.get_image_measurement_groups()
    (evaluation,) = group.get_qualitative_evaluations(name=codes.SCT.Nodule)
    assert evaluation.value == codes.SCT.Absent


@needs_dciodvfy
def test_a_classification_report_names_the_finding_and_its_probability() -> None:
    source = pydicom.dcmread(io.BytesIO(series(phantom_hu(slices=1))[0]))
    probabilities = {"pneumothorax": 0.83, "normal": 0.17}
    args: dict[str, Any] = {"label": "pneumothorax", "probabilities": probabilities, "model_name": "scan_classifier"}
    sr = classification_report(source, **args, model_version=3, uid_seed="upload-1")
    assert dciodvfy_errors(sr) == []
    read = hd.sr.srread(io.BytesIO(to_bytes(sr)))
    groups = read.content.get_image_measurement_groups()
    by_class = {group.finding_type.meaning: group for group in groups}
    assert set(by_class) == set(probabilities)
    for label, probability in probabilities.items():
        (measurement,) = by_class[label].get_measurements(name=codes.DCM.Probability)
        assert float(measurement.value) == probability
    (finding,) = by_class["pneumothorax"].get_qualitative_evaluations()
    assert (finding.name.meaning, finding.value) == ("pneumothorax", codes.SCT.Present)
    assert by_class["normal"].get_qualitative_evaluations() == []
    (image,) = by_class["pneumothorax"].source_images
    assert image.referenced_sop_instance_uid == source.SOPInstanceUID
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.SeriesInstanceUID != source.SeriesInstanceUID
    only_in_patient_module(sr)
    again = classification_report(source, **args, model_version=3, uid_seed="upload-1")
    assert (again.SeriesInstanceUID, again.SOPInstanceUID) == (sr.SeriesInstanceUID, sr.SOPInstanceUID)
    other = classification_report(source, **args, model_version=3, uid_seed="upload-2")
    assert other.SOPInstanceUID != sr.SOPInstanceUID
