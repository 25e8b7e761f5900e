"""What the series pipeline tests share: CT phantom series written as DICOM files, with what
each one should come back as."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from model_store.build import ct_series_phantoms, dicom_series

# Small phantoms: enough slices and pixels for the model to find a nodule, quick to write and run.
GRID = {"rows": 288, "cols": 288, "pixel_spacing": (1.25, 1.25), "slices": 20, "slice_spacing": 2.5}


@dataclass(frozen=True)
class PhantomSeries:
    study_uid: str
    series_uid: str
    files: list[bytes]  # one CT instance per slice, in slice order
    truth: ct_series_phantoms.Series


def phantom_series(seed: int, index: int, study_uid: str, nodules: int = 1) -> PhantomSeries:
    """The first phantom from `index` on whose slab holds `nodules` whole nodules (a slab may cut one)."""
    truth = ct_series_phantoms.generate(seed, index, nodules=nodules, **GRID)  # type: ignore[arg-type]
    while len(truth.nodules) != nodules:
        index += 100
        truth = ct_series_phantoms.generate(seed, index, nodules=nodules, **GRID)  # type: ignore[arg-type]
    series_uid = generate_uid()
    options = dicom_series.SeriesOptions(
        spacing_mm=truth.spacing_mm, study_uid=study_uid, series_uid=series_uid, series_number=index + 1
    )
    return PhantomSeries(study_uid, series_uid, dicom_series.single_frame_series(truth.hu, options), truth)


def extra_slice(series: PhantomSeries, corrupt: bool = False) -> bytes:
    """One more instance after the series' last slice (a new SOP Instance UID, the next position);
    `corrupt`: its header is whole but its pixel data is cut short."""
    ds = pydicom.dcmread(io.BytesIO(series.files[-1]))
    step = series.truth.spacing_mm[0]
    ds.ImagePositionPatient = [float(v) for v in ds.ImagePositionPatient[:2]] + [
        float(ds.ImagePositionPatient[2]) + step
    ]
    ds.InstanceNumber = int(ds.InstanceNumber) + 1
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if corrupt:
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)
