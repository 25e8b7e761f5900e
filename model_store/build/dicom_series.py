"""A CT volume in Hounsfield units written as a DICOM series: classic single-frame or Enhanced CT.

`single_frame_series` gives one CT Image Storage instance per slice; `enhanced_ct` gives one
Enhanced CT Image Storage file holding every slice as a frame. Both place slice k at
origin + k * slice spacing * normal, the normal being the cross product of the orientation's row
and column directions, and both pass dciodvfy without errors. Study, series and frame of
reference UIDs may be fixed by the caller, so that tests can build interleaved series, a stray
instance of another study, or the same study in both encodings.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import CTImageStorage, EnhancedCTImageStorage, generate_uid

from model_store.build import dicom_part10

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # rows run left to right, columns front to back
DEFAULT_SPACING = (2.5, 0.7, 0.7)  # (between slices, between rows, between columns) mm


@dataclass(frozen=True)
class SeriesOptions:
    """What the instances share besides their pixels; any UID left None is made fresh."""

    spacing_mm: tuple[float, float, float] = DEFAULT_SPACING
    orientation: tuple[float, float, float, float, float, float] = AXIAL
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rescale: tuple[float, float] = (1.0, -1024.0)  # (slope, intercept): HU = stored * slope + intercept
    study_uid: str | None = None
    series_uid: str | None = None
    frame_of_reference_uid: str | None = None
    series_number: int = 1
    patient_name: str = "Phantom^Series"
    patient_id: str = "PHANTOM-0007"
    birth_date: str = "19600101"


def normal(orientation: Sequence[float]) -> np.ndarray:
    """The slice normal: row direction x column direction."""
    return np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))


def positions(count: int, options: SeriesOptions) -> np.ndarray:
    """ImagePositionPatient of each of `count` slices, (count, 3) mm."""
    steps = np.arange(count, dtype=float)[:, None] * options.spacing_mm[0]
    return np.asarray(options.origin, float) + steps * normal(options.orientation)


def single_frame_datasets(hu: np.ndarray, options: SeriesOptions | None = None) -> list[Dataset]:
    """One CT Image Storage dataset per slice of `hu` (slices, rows, columns), in slice order."""
    options = options or SeriesOptions()
    stored, bits = _stored(hu, options)
    uids = _shared_uids(options)
    out = []
    for k, (plane, position) in enumerate(zip(stored, positions(len(stored), options), strict=True)):
        ds = _base(CTImageStorage, options, uids)
        ds.ImageType = ["DERIVED", "PRIMARY", "AXIAL"]  # computed phantoms, not acquired
        ds.InstanceNumber = k + 1
        ds.AcquisitionNumber = 1
        ds.KVP = "120"
        ds.SliceThickness = _ds(options.spacing_mm[0])
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.ImageOrientationPatient = [_ds(v) for v in options.orientation]
        ds.SliceLocation = _ds(float(position @ normal(options.orientation)))
        dicom_part10.set_pixels(
            ds, plane, bits_stored=bits, photometric="MONOCHROME2", pixel_spacing=options.spacing_mm[1:]
        )
        ds.RescaleSlope, ds.RescaleIntercept = _ds(options.rescale[0]), _ds(options.rescale[1])
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = "-600", "1500"
        out.append(ds)
    return out


def single_frame_series(hu: np.ndarray, options: SeriesOptions | None = None) -> list[bytes]:
    """`single_frame_datasets` as Part-10 files."""
    return [dicom_part10.to_bytes(ds) for ds in single_frame_datasets(hu, options)]


def enhanced_ct_dataset(hu: np.ndarray, options: SeriesOptions | None = None) -> Dataset:
    """One Enhanced CT Image Storage dataset: frame k is slice k of `hu`."""
    options = options or SeriesOptions()
    stored, bits = _stored(hu, options)
    ds = _base(EnhancedCTImageStorage, options, _shared_uids(options))
    frame_type = ["DERIVED", "PRIMARY", "VOLUME", "NONE"]  # DERIVED: no acquisition macros are due
    ds.ImageType = frame_type
    ds.InstanceNumber = 1
    ds.AcquisitionNumber = 1
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ContentQualification = "RESEARCH"
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.AcquisitionContextSequence = DicomSequence()
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = ds.StudyTime
    ds.NumberOfFrames = len(stored)

    dimension_uid = generate_uid()
    ds.DimensionOrganizationType = "3D"
    ds.DimensionOrganizationSequence = [_item(DimensionOrganizationUID=dimension_uid)]
    ds.DimensionIndexSequence = [
        _item(
            DimensionOrganizationUID=dimension_uid,
            DimensionIndexPointer=0x00209056,  # Stack ID
            FunctionalGroupPointer=0x00209111,  # Frame Content Sequence
            DimensionDescriptionLabel="Stack",
        ),
        _item(
            DimensionOrganizationUID=dimension_uid,
            DimensionIndexPointer=0x00209057,  # In-Stack Position Number
            FunctionalGroupPointer=0x00209111,
            DimensionDescriptionLabel="Position in stack",
        ),
    ]
    ds.SharedFunctionalGroupsSequence = [_shared_groups(options, frame_type)]
    ds.PerFrameFunctionalGroupsSequence = [
        _item(
            FrameContentSequence=[_item(StackID="1", InStackPositionNumber=k + 1, DimensionIndexValues=[1, k + 1])],
            PlanePositionSequence=[_item(ImagePositionPatient=[_ds(v) for v in position])],
        )
        for k, position in enumerate(positions(len(stored), options))
    ]
    ds.Rows, ds.Columns = stored.shape[1:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = stored.astype("<u2").tobytes()
    return ds


def enhanced_ct(hu: np.ndarray, options: SeriesOptions | None = None) -> bytes:
    """`enhanced_ct_dataset` as a Part-10 file."""
    return dicom_part10.to_bytes(enhanced_ct_dataset(hu, options))


def _shared_groups(options: SeriesOptions, frame_type: list[str]) -> Dataset:
    slope, intercept = options.rescale
    return _item(
        PixelMeasuresSequence=[
            _item(PixelSpacing=[_ds(v) for v in options.spacing_mm[1:]], SliceThickness=_ds(options.spacing_mm[0]))
        ],
        PlaneOrientationSequence=[_item(ImageOrientationPatient=[_ds(v) for v in options.orientation])],
        PixelValueTransformationSequence=[
            _item(RescaleSlope=_ds(slope), RescaleIntercept=_ds(intercept), RescaleType="HU")
        ],
        FrameVOILUTSequence=[_item(WindowCenter="-600", WindowWidth="1500")],
        FrameAnatomySequence=[
            _item(
                AnatomicRegionSequence=[
                    _item(CodeValue="51185008", CodingSchemeDesignator="SCT", CodeMeaning="Thorax")
                ],
                FrameLaterality="U",
            )
        ],
        CTImageFrameTypeSequence=[
            _item(
                FrameType=frame_type,
                PixelPresentation="MONOCHROME",
                VolumetricProperties="VOLUME",
                VolumeBasedCalculationTechnique="NONE",
            )
        ],
        IrradiationEventIdentificationSequence=[_item(IrradiationEventUID=generate_uid())],
    )


def _base(sop_class_uid: str, options: SeriesOptions, uids: tuple[str, str, str]) -> Dataset:
    ds = dicom_part10.new_dataset(
        sop_class_uid,
        modality="CT",
        patient_name=options.patient_name,
        patient_id=options.patient_id,
        birth_date=options.birth_date,
    )
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uids
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = datetime.datetime.now().strftime("%H%M%S")
    ds.SeriesNumber = options.series_number
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"  # head first supine
    ds.BodyPartExamined = "CHEST"
    ds.Manufacturer = "medfn phantoms"
    ds.ManufacturerModelName = "dicom_series"
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = "1"
    return ds


def _shared_uids(options: SeriesOptions) -> tuple[str, str, str]:
    return (
        options.study_uid or generate_uid(),
        options.series_uid or generate_uid(),
        options.frame_of_reference_uid or generate_uid(),
    )


def _stored(hu: np.ndarray, options: SeriesOptions) -> tuple[np.ndarray, int]:
    """Stored values for HU = stored * slope + intercept, unsigned; and the bits they need (12 or 16)."""
    if hu.ndim != 3:
        raise ValueError("hu must be (slices, rows, columns)")
    slope, intercept = options.rescale
    stored = np.round((np.asarray(hu, np.float64) - intercept) / slope)
    if stored.min(initial=0) < 0 or stored.max(initial=0) >= 1 << 16:
        raise ValueError("HU values do not fit unsigned 16-bit stored values with this rescale")
    bits = 12 if stored.max(initial=0) < 1 << 12 else 16
    return stored.astype(np.uint16), bits


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _ds(value: float) -> str:
    """A decimal string (at most 16 characters) that reads back as the same float to 1e-6."""
    return f"{value:.10g}"[:16]
