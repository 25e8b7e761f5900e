"""A model's explanation of one image (the heat map over it) as a DICOM Secondary Capture in the
source study, so a PACS shows it beside the scan and the SR of the answer.

The overlay is burned into the pixels (BurnedInAnnotation stays NO: it holds no text, and so
nothing that identifies the patient), derived from the source image, which it references. UIDs
come from `uid_seed` (medfn.studies.provenance), so a redelivered event rewrites the same instance.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from medfn.studies import provenance

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# The series a PACS shows explanations under; fixed, so a rewrite lands in the same place.
EXPLANATION_SERIES_NUMBER = 9004
_BIPED = frozenset("LRAPHF")


def explanation_capture(
    source: Dataset, overlay_png: bytes, *, method: str, model_name: str, model_version: str | int, uid_seed: str
) -> Dataset:
    """An RGB Secondary Capture of `overlay_png` in `source`'s study, a new series of its own."""
    import highdicom as hd
    from PIL import Image
    from pydicom.dataset import Dataset as Item
    from pydicom.uid import ExplicitVRLittleEndian

    pixels = np.asarray(Image.open(io.BytesIO(overlay_png)).convert("RGB"), dtype=np.uint8)
    source = provenance.fill_filing_attributes(source)
    orientation = _orientation(source)
    capture = hd.sc.SCImage.from_ref_dataset(
        source,
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=provenance.stable_uid(uid_seed, "sc", "series"),
        series_number=EXPLANATION_SERIES_NUMBER,
        sop_instance_uid=provenance.stable_uid(uid_seed, "sc", "instance"),
        instance_number=1,
        manufacturer=provenance.MANUFACTURER,
        patient_orientation=orientation or ("L", "F"),
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    if orientation is None:  # unknown: Type 2, present and empty rather than made up
        capture.add_new("PatientOrientation", "CS", "")
    laterality = source.get("Laterality") or source.get("ImageLaterality")
    if source.get("BodyPartExamined"):
        capture.BodyPartExamined = source.BodyPartExamined
    if laterality in ("L", "R"):
        capture.Laterality = laterality
    elif not source.get("BodyPartExamined"):  # Type 2C: a part that may be paired, side unknown
        capture.Laterality = ""
    capture.SeriesDescription = _lo(f"medfn {model_name} explanation ({method})")
    capture.DerivationDescription = _lo(f"{method} map of model {model_name} {model_version} over the image")
    capture.BurnedInAnnotation = "NO"
    capture.SoftwareVersions = provenance.software_version()
    capture.DeviceSerialNumber = provenance.device_serial(model_name, model_version)
    reference = Item()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    capture.SourceImageSequence = [reference]
    return capture


def _orientation(source: Dataset) -> tuple[str, str] | None:
    """The source's PatientOrientation when it names two directions a biped has, else None."""
    value = source.get("PatientOrientation")
    parts: list[str] = [str(v) for v in value] if value is not None and not isinstance(value, str) else []
    if len(parts) == 2 and all(part and set(part) <= _BIPED for part in parts):
        return parts[0], parts[1]
    return None


def _lo(text: str) -> str:
    return text.replace("\\", "/")[:64]
