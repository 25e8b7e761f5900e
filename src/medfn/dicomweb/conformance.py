"""What medfn takes in, by STOW-RS and by C-STORE alike: the storage SOP classes and transfer
syntaxes (the conformance statement docs/pacs.md prints), and the failure codes it answers with.

Only image SOP classes are taken: a PACS that forwards a whole study also sends its reports,
presentation states and, once medfn has answered, medfn's own SEG and SR; refusing those
(Referenced SOP Class not supported) keeps a result from being fed back in as an input.
"""

from __future__ import annotations

from medfn.errors import UnprocessableInput

# SOP Class UID -> name (PS3.6 Annex A)
STORAGE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.1": "CR Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.2": "Digital Mammography X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "Digital Mammography X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
}

# Transfer Syntax UID -> name. Deflated Explicit VR Little Endian is left out on purpose: it
# inflates without a bound known in advance (medfn.studies.headers refuses it too).
TRANSFER_SYNTAXES: dict[str, str] = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline (Process 1)",
    "1.2.840.10008.1.2.4.51": "JPEG Extended (Process 2 & 4)",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Image Compression (Lossless Only)",
    "1.2.840.10008.1.2.4.91": "JPEG 2000 Image Compression",
    "1.2.840.10008.1.2.5": "RLE Lossless",
}

VERIFICATION = "1.2.840.10008.1.1"

# Failure Reason (0008,1197) of a STOW-RS answer (PS3.18 Table I.2-2); the same codes serve as the
# Status of a failed C-STORE (PS3.4 B.2.3 and PS3.7 Annex C).
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900  # the data set does not match its SOP class, or not the study it was sent to
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122


def check_pixels(data: bytes) -> None:
    """Pixel data as long as the header says (an uncompressed image cut short parses without a
    complaint, so it is measured here). Raises UnprocessableInput naming the problem, never a value."""
    from pydicom.pixels.utils import get_expected_length

    from medfn.studies.headers import read_dataset

    ds = read_dataset(data, pixels=True)
    if "PixelData" not in ds:
        raise UnprocessableInput("DICOM image has no pixel data (truncated?)")
    if not ds.file_meta.TransferSyntaxUID.is_compressed:
        try:
            expected = int(get_expected_length(ds, "bytes"))
        except Exception as exc:  # a pixel description that does not add up
            raise UnprocessableInput("DICOM image's pixel description is incomplete") from exc
        if len(ds.PixelData) < expected:
            raise UnprocessableInput("DICOM image's pixel data is shorter than its header says (truncated)")
