"""The parts of a DICOM Part-10 file that every phantom writer shares.

The phantom modules only decide what their pixels and modality-specific attributes are;
file meta, fresh UIDs, the (fake) demographics and the pixel module are written here once.
"""

from __future__ import annotations

import datetime
import io

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid


def new_dataset(sop_class_uid: str, *, modality: str, patient_name: str, patient_id: str, birth_date: str) -> Dataset:
    """A dataset with file meta, new study/series/instance UIDs and the patient module."""
    sop_instance_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date
    ds.PatientSex = "O"
    today = datetime.date.today().strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    return ds


def set_pixels(
    ds: Dataset, stored: np.ndarray, *, bits_stored: int, photometric: str, pixel_spacing: tuple[float, float]
) -> None:
    """Attach an unsigned 16-bit-allocated grayscale image (the Image Pixel module)."""
    if stored.dtype != np.uint16 or stored.ndim != 2:
        raise ValueError("stored pixels must be a 2-D uint16 array")
    if int(stored.max(initial=0)) >= 1 << bits_stored:
        raise ValueError(f"stored pixels do not fit in {bits_stored} bits")
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [f"{pixel_spacing[0]:.6g}", f"{pixel_spacing[1]:.6g}"]
    # Explicit little endian: the bytes are the little-endian words, whatever the host is.
    ds.PixelData = stored.astype("<u2").tobytes()


def to_bytes(ds: Dataset) -> bytes:
    """Serialise as a Part-10 file: 128-byte preamble, 'DICM', file meta, then the data set."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def around(pixels: np.ndarray, syntax: str, *, rgb: bool = False) -> bytes:
    """A DX file around raw pixels (uint16 grayscale, or uint8 RGB) in `syntax`: the decoders'
    size and codec tests, where the picture does not matter but its shape and encoding do."""
    from pydicom.uid import DigitalXRayImageStorageForPresentation, RLELossless

    ds = new_dataset(
        DigitalXRayImageStorageForPresentation, modality="DX", patient_name="", patient_id="", birth_date=""
    )
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8 if rgb else 16
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if rgb:
        ds.PlanarConfiguration = 0
    if syntax == RLELossless:
        ds.compress(RLELossless, pixels)
    else:
        ds.PixelData = pixels.tobytes()
        ds.file_meta.TransferSyntaxUID = syntax
    return to_bytes(ds)
