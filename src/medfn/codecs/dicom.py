"""DICOM through pydicom: modality LUT, VOI window, MONOCHROME1, first frame, colour, compression.

Error messages name the problem (and the transfer syntax) but never quote the dataset: a
DICOM header holds patient demographics, and parser exceptions and warnings may echo any of it.
So every header read is guarded, pydicom's validation warnings are off, and a value that does
not parse is the sender's error (422), not ours.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_modality_lut

from medfn.codecs.budget import check_budget
from medfn.codecs.decoded import DecodedImage
from medfn.errors import MedfnError, UnprocessableInput, UnsupportedMediaType

Window = tuple[float, float]  # (center, width)
# pydicom warns about a value that does not fit its VR by quoting it: the header's text.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
# A deflated data set is inflated whole by the reader, before any size is known: 1 MB can ask
# for gigabytes. The image compressions (RLE, JPEG, JPEG 2000) are budgeted from the header.
_DEFLATED = pydicom.uid.DeflatedExplicitVRLittleEndian


def decode_dicom(
    data: bytes, *, max_pixels: int, max_bytes: int, window: Window | None = None, prefer_file_window: bool = True
) -> DecodedImage:
    """The first frame as float32 in [0, 1].

    `window` is the model's own VOI window; the file's window wins when `prefer_file_window`
    (radiographs are windowed for display by the modality), the model's otherwise (a CT model
    trained on a lung window must see a lung window whatever the file suggests).
    """
    ds = _read(data)
    try:
        return _decode(ds, max_pixels, max_bytes, window, prefer_file_window)
    except MedfnError:
        raise
    except Exception:  # a header value that is not what its attribute holds; its text stays here
        raise UnprocessableInput(
            "DICOM header holds a value its attribute cannot take (e.g. a number that is not one)"
        ) from None


def _decode(
    ds: pydicom.Dataset, max_pixels: int, max_bytes: int, window: Window | None, prefer_file_window: bool
) -> DecodedImage:
    if "PixelData" not in ds:
        raise UnprocessableInput("DICOM file has no pixel data")
    _check_transfer_syntax(ds)
    rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * columns == 0:
        raise UnprocessableInput("DICOM file has no image dimensions (Rows, Columns)")
    if rows * columns > max_pixels:
        raise UnprocessableInput(f"DICOM image is {columns}x{rows} pixels, over the limit of {max_pixels} pixels")
    check_budget(columns, rows, int(ds.get("SamplesPerPixel", 1) or 1), max_bytes, "DICOM image")  # the first frame

    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        ds.pixel_array_options(index=0)  # decode the first frame only
    try:
        stored = ds.pixel_array  # colour arrives as RGB: pydicom converts YBR by default
    except Exception as exc:  # decoders raise many types; none of their text goes out
        raise UnprocessableInput("DICOM pixel data could not be decoded (truncated or corrupt)") from exc

    if int(ds.get("SamplesPerPixel", 1)) == 3:
        pixels = stored.astype(np.float32) / np.float32(2 ** int(ds.get("BitsStored", 8)) - 1)
    else:
        values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)  # e.g. Hounsfield units
        center, width = _choose_window(ds, values, window, prefer_file_window)
        pixels = linear_window(values, center, width)
        if ds.get("PhotometricInterpretation") == "MONOCHROME1":
            pixels = 1.0 - pixels  # MONOCHROME1 shows low values bright
    return DecodedImage(
        pixels=np.clip(pixels, 0.0, 1.0).astype(np.float32, copy=False),
        source="dicom",
        pixel_spacing_mm=_pixel_spacing(ds),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")) or None,
        modality=str(ds.get("Modality", "")) or None,
        photometric=str(ds.get("PhotometricInterpretation", "")) or None,
    )


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """The DICOM linear VOI function (PS3.3 C.11.2.1.2.1), output scaled to [0, 1]."""
    width = max(float(width), 1.0)
    scaled = (values - (center - 0.5)) / (width - 1.0) + 0.5
    return np.clip(scaled, 0.0, 1.0).astype(np.float32, copy=False)


def _read(data: bytes) -> pydicom.Dataset:
    try:
        stream = io.BytesIO(data)
        read_preamble(stream, False)
        # The file meta alone (pydicom's file-like way to it is private; read_file_meta_info takes paths)
        syntax = _read_file_meta_info(stream).get("TransferSyntaxUID")
    except InvalidDicomError as exc:
        raise UnprocessableInput("body is not a DICOM file (no DICM preamble)") from exc
    except Exception as exc:
        raise UnprocessableInput("DICOM file is truncated or corrupt") from exc
    if syntax == _DEFLATED:
        raise UnsupportedMediaType(
            "DICOM transfer syntax Deflated Explicit VR Little Endian is not accepted (it inflates without a"
            " bound known in advance): send it uncompressed, or with RLE, JPEG or JPEG 2000"
        )
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError as exc:
        raise UnprocessableInput("body is not a DICOM file (no DICM preamble)") from exc
    except Exception as exc:
        raise UnprocessableInput("DICOM file is truncated or corrupt") from exc


def undecodable_syntax(ds: pydicom.Dataset) -> str | None:
    """The dataset's compressed transfer syntax, named, when no installed decoder reads it."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        return None
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:
        available = False
    return None if available else f"{syntax.name} ({syntax})"


def _check_transfer_syntax(ds: pydicom.Dataset) -> None:
    named = undecodable_syntax(ds)
    if named is not None:
        raise UnsupportedMediaType(f"DICOM transfer syntax {named} is not supported")


def _choose_window(ds: pydicom.Dataset, values: np.ndarray, model_window: Window | None, prefer_file: bool) -> Window:
    file_window = _file_window(ds)
    for candidate in (file_window, model_window) if prefer_file else (model_window, file_window):
        if candidate is not None:
            return candidate
    low, high = float(values.min()), float(values.max())  # no window anywhere: full range
    return (low + high) / 2.0 + 0.5, max(high - low + 1.0, 1.0)


def _file_window(ds: pydicom.Dataset) -> Window | None:
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None

    # Multi-valued windows offer alternatives; the first is the modality's default.
    def first(value: Any) -> float:  # a DS or IS value, or several
        return float(value[0]) if isinstance(value, pydicom.multival.MultiValue) else float(value)

    try:
        return first(center), first(width)
    except (TypeError, ValueError, IndexError):
        return None


def _pixel_spacing(ds: pydicom.Dataset) -> tuple[float, float] | None:
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    try:
        return (float(spacing[0]), float(spacing[1])) if spacing else None
    except (TypeError, ValueError, IndexError):
        return None
