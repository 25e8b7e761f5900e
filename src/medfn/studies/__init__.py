"""A DICOM study in, DICOM results back into it: series to volume, model output to SEG and SR.

    headers.py      InstanceHeader, read_header: which study and series an instance joins (no pixels)
    volume.py       Volume, SourceFrame, build_volume, readable: a series as one volume in HU
    planes.py       each plane of an instance from its header (single-frame or functional groups)
    geometry.py     whether planes stack into one volume, and their order along the normal
    instances.py    one instance opened for the volume; anything unusable is a CorruptInstance
    dicom_seg.py    segmentation: a label map as a DICOM SEG in the source study (highdicom)
    dicom_sr.py     nodule_report, classification_report: TID 1500 SR in the source study
    secondary_capture.py  explanation_capture: a model's heat map as a Secondary Capture in the study
    provenance.py   what the results say of their origin: stable UIDs, device, algorithm
    writing.py      read_dataset, to_bytes: DICOM bytes in and out for the pipeline

The problems a series can have are medfn.errors.SeriesProblem and CorruptInstance (422).
pydicom and highdicom are imported by the modules that use them; the names below load their
module on first use (PEP 562), so importing this package costs nothing at cold start.
"""

from medfn import _lazy_names

# Public name -> the module that defines it, imported when the name is first used.
_HOMES = {
    "InstanceHeader": "headers",
    "SourceFrame": "volume",
    "Volume": "volume",
    "build_volume": "volume",
    "classification_report": "dicom_sr",
    "explanation_capture": "secondary_capture",
    "nodule_report": "dicom_sr",
    "read_header": "headers",
    "readable": "volume",
    "segmentation": "dicom_seg",
}
__all__ = sorted(_HOMES)

__getattr__ = _lazy_names(__name__, _HOMES)
