"""Decoders from wire bytes to arrays: images (PNG, JPEG), DICOM. Each raises medfn.errors."""

from __future__ import annotations

from medfn.codecs.budget import check_budget
from medfn.codecs.decoded import DecodedImage
from medfn.errors import UnprocessableInput

__all__ = ["MEDIA_TYPES", "DecodedImage", "check_budget", "decode_image", "signature_media_type", "sniff"]

# Magic numbers: the type of an upload is read from its bytes, never from its name.
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"


# What each signature is handed to a model as; a file name or a Content-Type is never trusted.
MEDIA_TYPES = {"dicom": "application/dicom", "png": "image/png", "jpeg": "image/jpeg"}


def sniff(data: bytes) -> str | None:
    """'dicom', 'png', 'jpeg' or None."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if data.startswith(_PNG):
        return "png"
    if data.startswith(_JPEG):
        return "jpeg"
    return None


def signature_media_type(data: bytes) -> str | None:
    """The media type the bytes' signature says, or None."""
    kind = sniff(data)
    return MEDIA_TYPES[kind] if kind else None


def decode_image(
    data: bytes,
    *,
    max_pixels: int,
    max_bytes: int,
    window: tuple[float, float] | None = None,
    prefer_file_window: bool = True,
    declared: str | None = None,
) -> DecodedImage:
    """Any supported image, its type read from its bytes. pydicom loads only for DICOM.

    `declared` is what the sender said it is ("dicom"); it only matters when the bytes carry
    no signature, so that a DICOM without its preamble gets pydicom's verdict, not ours.
    """
    kind = sniff(data) or declared
    if kind == "dicom":
        from medfn.codecs.dicom import decode_dicom

        return decode_dicom(
            data, max_pixels=max_pixels, max_bytes=max_bytes, window=window, prefer_file_window=prefer_file_window
        )
    if kind in ("png", "jpeg"):
        from medfn.codecs.raster import decode_raster

        return decode_raster(data, kind, max_pixels, max_bytes)
    if not data:
        raise UnprocessableInput("body is empty: expected a PNG, JPEG or DICOM image")
    raise UnprocessableInput("body is not a PNG, JPEG or DICOM image (unrecognised signature)")
