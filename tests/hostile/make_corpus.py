"""The hostile-input corpus: small files committed beside this script, large ones made at test time.

    .venv/bin/python -m tests.hostile.make_corpus     # rewrites the committed files

Every file is something a careless or malicious client could send; each must get a 4xx that
says why. The scripts that make them are here so that a file can be remade and read as code.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

FOLDER = Path(__file__).resolve().parent
NOISE_BYTES = 20 * 1024 * 1024  # over the 6 MB body limit several times: never committed
NESTING = 10_000  # past orjson's depth limit (1024) and Python's recursion limit (1000)


def _png(width: int, height: int, bit_depth: int, color_type: int, rows: Callable[[], bytes]) -> bytes:
    """A PNG written chunk by chunk, so the header can promise whatever the test needs."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows()) + chunk(b"IEND", b"")


def decompression_bomb_png() -> bytes:
    """144 megapixels of black in ~17 KB: 1-bit rows of zeros deflate about a thousandfold."""
    side = 12_000

    def rows() -> bytes:
        squeeze = zlib.compressobj(9)
        row = b"\x00" * (1 + side // 8)  # filter byte, then the row's bits
        return b"".join(squeeze.compress(row) for _ in range(side)) + squeeze.flush()

    return _png(side, side, 1, 0, rows)


def _noise_image(size: int = 64) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (size, size), dtype=np.uint8)


def truncated_png() -> bytes:
    """A valid 64x64 grayscale PNG cut off halfway through its pixel data."""
    pixels = _noise_image()
    whole = _png(64, 64, 8, 0, lambda: zlib.compress(b"".join(b"\x00" + row.tobytes() for row in pixels)))
    return whole[: len(whole) // 2]


def truncated_jpeg() -> bytes:
    """A valid 64x64 JPEG cut off halfway through its scan."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(_noise_image()).save(out, format="JPEG", quality=90)
    return out.getvalue()[: len(out.getvalue()) // 2]


def dicom_without_pixels() -> bytes:
    """A well-formed DICOM Part-10 file (secondary capture) with no Pixel Data element."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"  # fixed: the file stays byte-stable
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.PatientName = "Hostile^Test"
    ds.Rows, ds.Columns = 64, 64
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def dicom_jpeg_lossless() -> bytes:
    """pydicom's own JPEG Lossless (process 14) RGB: a transfer syntax pydicom cannot decode without plugins."""
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("SC_rgb_jpeg_gdcm.dcm")).read_bytes()


def deeply_nested_json() -> bytes:
    return b'{"records": ' + b"[" * NESTING + b"]" * NESTING + b"}"


def huge_numbers_json() -> bytes:
    """1e400 (infinite as a double), 10**400 and a 5000-digit integer (past Python's int parsing
    limit), where each task and the inference protocol read numbers."""
    big_float, big_int, giant_int = "1e400", "1" + "0" * 400, "9" * 5000
    return (
        f'{{"mean radius": {big_float}, "worst area": {big_int}, "text": {big_float}, "image": {big_int},'
        f' "observations": [{{"heart_rate": {big_float}, "spo2": {giant_int}}}],'
        f' "inputs": [{{"name": "features", "datatype": "FP32", "shape": [1, 1], "data": [{big_float}]}}]}}'
    ).encode()


def nan_and_infinity_json() -> bytes:
    """What Python's json.dumps writes for float("nan") and float("inf"): not JSON, but sent."""
    return (
        b'{"mean radius": NaN, "worst area": Infinity, "text": NaN, "image": -Infinity,'
        b' "observations": [{"heart_rate": NaN, "spo2": Infinity}],'
        b' "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 1], "data": [NaN]}]}'
    )


def invalid_utf8_text() -> bytes:
    return b"Chest pain \xff\xfe radiating to the \xc3\x28 left arm \xed\xa0\x80"


def invalid_utf8_json() -> bytes:
    return b'{"text": "chest \xff\xfe pain", "image": "\xc3\x28"}'


# file name -> its maker; the names' suffixes say which content types the tests send them as
COMMITTED: dict[str, Callable[[], bytes]] = {
    "bomb.png": decompression_bomb_png,
    "truncated.png": truncated_png,
    "truncated.jpg": truncated_jpeg,
    "no_pixel_data.dcm": dicom_without_pixels,
    "jpeg_lossless.dcm": dicom_jpeg_lossless,
    "empty.bin": lambda: b"",
    "deeply_nested.json": deeply_nested_json,
    "huge_numbers.json": huge_numbers_json,
    "nan_infinity.json": nan_and_infinity_json,
    "invalid_utf8.txt": invalid_utf8_text,
    "invalid_utf8.json": invalid_utf8_json,
}


def noise(size: int = NOISE_BYTES) -> bytes:
    """Random bytes, seeded: the same 20 MB on every run, made in ~50 ms rather than committed."""
    return np.random.default_rng(20).bytes(size)


def write(folder: Path = FOLDER) -> None:
    for name, make in COMMITTED.items():
        (folder / name).write_bytes(make())


if __name__ == "__main__":
    write()
    for name in COMMITTED:
        print(f"{(FOLDER / name).stat().st_size:>9,d}  {name}")
