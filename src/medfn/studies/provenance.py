"""What every DICOM result says about where it came from: stable UIDs, the device, the algorithm.

UIDs are derived from a seed (the pipeline's key for a source series and model version), never
drawn at random: a redelivered event rewrites the same SEG and SR instances, which a PACS then
files as the same objects instead of as second copies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import medfn

if TYPE_CHECKING:
    import highdicom

MANUFACTURER = "medfn"
# Series numbers a PACS shows the results under; fixed, so a rewrite lands in the same place.
SEG_SERIES_NUMBER = 9001
NODULE_SR_SERIES_NUMBER = 9002
CLASSIFICATION_SR_SERIES_NUMBER = 9003


def stable_uid(uid_seed: str, *parts: str) -> str:
    """A UID that depends only on the seed and the parts (pydicom's prefix, SHA-512 of them)."""
    from pydicom.uid import generate_uid

    if not uid_seed:
        raise ValueError("uid_seed must not be empty: results need stable UIDs")
    return str(generate_uid(entropy_srcs=["medfn", uid_seed, *parts]))


def algorithm(model_name: str, model_version: str | int) -> highdicom.AlgorithmIdentificationSequence:
    """Algorithm identification: family artificial intelligence, name "medfn <model>", version."""
    import highdicom
    from pydicom.sr.codedict import codes

    return highdicom.AlgorithmIdentificationSequence(
        name=_lo(f"medfn {model_name}"), family=codes.cid7162.ArtificialIntelligence, version=_lo(str(model_version))
    )


def sr_algorithm(model_name: str, model_version: str | int) -> highdicom.sr.AlgorithmIdentification:
    """The same identification as an SR template (TID 4019) names it."""
    import highdicom

    return highdicom.sr.AlgorithmIdentification(name=_lo(f"medfn {model_name}"), version=_lo(str(model_version)))


# Patient and study attributes of Type 2 (present, possibly empty) that highdicom copies from the
# source into a result: a source that left one out (many do) still gets a result a PACS can file.
_FILING_ATTRIBUTES = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
)  # fmt: skip


def fill_filing_attributes(ds: Any) -> Any:
    """`ds` with every Type 2 patient and study attribute present (empty where it was missing)."""
    for keyword in _FILING_ATTRIBUTES:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def software_version() -> str:
    return medfn.__version__


def device_serial(model_name: str, model_version: str | int) -> str:
    # Software has no serial number; the model and its version identify this "device" instead.
    return _lo(f"{model_name} {model_version}")


def _lo(text: str) -> str:
    """A Long String value: at most 64 characters, no backslash (it separates values)."""
    return text.replace("\\", "/")[:64]
