"""Decoding PNG, JPEG and DICOM into [0, 1] pixels, and refusing what cannot be decoded."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medfn.codecs import decode_image, sniff
from medfn.codecs.dicom import linear_window
from medfn.errors import UnprocessableInput, UnsupportedMediaType
from model_store.build import chest_phantoms

LIMIT = 64_000_000
BUDGET = 2**30  # a 2 GiB function's decode budget


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def read_testdata(name: str) -> bytes:
    return open(get_testdata_file(name), "rb").read()


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    return chest_phantoms.generate(2, seed=99, size=64)[0][1]


def test_sniff_reads_the_bytes_not_the_name(phantom: np.ndarray) -> None:
    assert sniff(chest_phantoms.to_png(phantom)) == "png"
    assert sniff(chest_phantoms.to_dicom(phantom)) == "dicom"
    assert sniff(b"\xff\xd8\xff\xe0rest") == "jpeg"
    assert sniff(b"hello") is None


def test_png_8_and_16_bit_land_in_unit_range() -> None:
    ramp8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    decoded = decode_image(png_bytes(ramp8), max_pixels=LIMIT, max_bytes=BUDGET).pixels
    np.testing.assert_allclose(decoded, ramp8 / 255.0, atol=1e-6)
    ramp16 = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    decoded16 = decode_image(png_bytes(ramp16), max_pixels=LIMIT, max_bytes=BUDGET).pixels
    np.testing.assert_allclose(decoded16, ramp16 / 65535.0, atol=1e-6)


def test_rgba_and_palette_become_rgb() -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128
    assert decode_image(png_bytes(rgba), max_pixels=LIMIT, max_bytes=BUDGET).pixels.shape == (8, 8, 3)
    palette = Image.new("P", (8, 8), 3)
    buf = io.BytesIO()
    palette.save(buf, format="PNG")
    assert decode_image(buf.getvalue(), max_pixels=LIMIT, max_bytes=BUDGET).pixels.shape == (8, 8, 3)


def test_jpeg_decodes_close_to_its_source(phantom: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.round(phantom * 255).astype(np.uint8)).save(buf, format="JPEG", quality=95)
    decoded = decode_image(buf.getvalue(), max_pixels=LIMIT, max_bytes=BUDGET)
    assert decoded.source == "jpeg"
    assert np.abs(decoded.pixels - phantom).mean() < 0.02


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"plain text, not an image", "not a PNG, JPEG or DICOM"),
        (png_bytes(np.zeros((64, 64), dtype=np.uint8))[:60], "truncated or corrupt"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 40, "not a decodable JPEG"),
    ],
)
def test_undecodable_images_are_422_with_the_reason(data: bytes, fragment: str) -> None:
    with pytest.raises(UnprocessableInput, match=fragment):
        decode_image(data, max_pixels=LIMIT, max_bytes=BUDGET)


@pytest.mark.parametrize(
    ("side", "fragment"),
    [(10_000, "over the limit of 64000000 pixels"), (20_000, "decompression bomb")],  # ours, then Pillow's
)
def test_decompression_bombs_are_refused_before_decoding(side: int, fragment: str) -> None:
    # All zeros: a few hundred kB of PNG, 100 or 400 megapixels once decoded.
    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, format="PNG")
    with pytest.raises(UnprocessableInput, match=fragment):
        decode_image(buf.getvalue(), max_pixels=LIMIT, max_bytes=BUDGET)


def test_dicom_window_from_the_file_reproduces_the_phantom(phantom: np.ndarray) -> None:
    decoded = decode_image(chest_phantoms.to_dicom(phantom, bits=12), max_pixels=LIMIT, max_bytes=BUDGET)
    assert decoded.source == "dicom" and decoded.sop_instance_uid
    np.testing.assert_allclose(decoded.pixels, phantom, atol=1.5 / 4095)
    assert decoded.pixel_spacing_mm is not None


def test_monochrome1_is_inverted_back(phantom: np.ndarray) -> None:
    mono1 = decode_image(chest_phantoms.to_dicom(phantom, monochrome1=True), max_pixels=LIMIT, max_bytes=BUDGET).pixels
    np.testing.assert_allclose(mono1, phantom, atol=1.5 / 4095)


def test_rescale_slope_intercept_then_the_models_window_when_it_wins() -> None:
    ds = pydicom.dcmread(io.BytesIO(chest_phantoms.to_dicom(np.zeros((8, 8)), bits=12)))
    hu = np.linspace(-1000, 1000, 64, dtype=np.float32).reshape(8, 8)
    ds.PixelData = np.round(hu + 1024).astype(np.uint16).tobytes()
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.WindowCenter, ds.WindowWidth = 40, 400  # soft tissue, in the file
    data = dicom_bytes(ds)
    lung = decode_image(
        data, max_pixels=LIMIT, max_bytes=BUDGET, window=(-600.0, 1500.0), prefer_file_window=False
    ).pixels
    np.testing.assert_allclose(lung, linear_window(np.round(hu), -600.0, 1500.0), atol=1e-5)
    soft = decode_image(
        data, max_pixels=LIMIT, max_bytes=BUDGET, window=(-600.0, 1500.0), prefer_file_window=True
    ).pixels
    np.testing.assert_allclose(soft, linear_window(np.round(hu), 40.0, 400.0), atol=1e-5)


def test_multi_frame_takes_the_first_frame() -> None:
    ds = pydicom.dcmread(io.BytesIO(chest_phantoms.to_dicom(np.zeros((8, 8)), bits=12)))
    frames = np.stack([np.full((8, 8), 1000, np.uint16), np.full((8, 8), 3000, np.uint16)])
    ds.NumberOfFrames = 2
    ds.PixelData = frames.tobytes()
    decoded = decode_image(dicom_bytes(ds), max_pixels=LIMIT, max_bytes=BUDGET).pixels
    assert decoded.shape == (8, 8)
    np.testing.assert_allclose(decoded, linear_window(np.full((8, 8), 1000.0), 2048, 4096))


@pytest.mark.parametrize("compressed", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"])
def test_lossless_compressed_syntaxes_decode_like_the_uncompressed_file(compressed: str) -> None:
    reference = decode_image(read_testdata("MR_small.dcm"), max_pixels=LIMIT, max_bytes=BUDGET).pixels
    np.testing.assert_allclose(
        decode_image(read_testdata(compressed), max_pixels=LIMIT, max_bytes=BUDGET).pixels, reference, atol=1e-6
    )


def test_jpeg_baseline_and_ybr_colour_arrive_as_rgb() -> None:
    reference = decode_image(read_testdata("SC_rgb_rle.dcm"), max_pixels=LIMIT, max_bytes=BUDGET).pixels  # lossless RGB
    for name in ("SC_rgb_jpeg_dcmtk.dcm", "SC_ybr_full_422_uncompressed.dcm"):
        decoded = decode_image(read_testdata(name), max_pixels=LIMIT, max_bytes=BUDGET).pixels
        assert decoded.shape == reference.shape and decoded.shape[-1] == 3
        assert np.abs(decoded - reference).mean() < 0.01, name


def test_unsupported_transfer_syntax_is_415_naming_it() -> None:
    with pytest.raises(UnsupportedMediaType, match=r"JPEG Lossless.*1\.2\.840\.10008\.1\.2\.4\.70"):
        decode_image(read_testdata("SC_rgb_jpeg_gdcm.dcm"), max_pixels=LIMIT, max_bytes=BUDGET)


def test_dicom_without_pixel_data_or_preamble_or_tail_is_422(phantom: np.ndarray) -> None:
    with pytest.raises(UnprocessableInput, match="no pixel data"):
        decode_image(read_testdata("rtplan.dcm"), max_pixels=LIMIT, max_bytes=BUDGET)
    with pytest.raises(UnprocessableInput, match="not a DICOM file"):
        decode_image(b"\0" * 200, max_pixels=LIMIT, max_bytes=BUDGET, declared="dicom")
    whole = chest_phantoms.to_dicom(phantom)
    with pytest.raises(UnprocessableInput, match="truncated or corrupt"):
        decode_image(whole[: len(whole) - 3000], max_pixels=LIMIT, max_bytes=BUDGET)


def test_errors_never_quote_the_demographics(phantom: np.ndarray) -> None:
    whole = chest_phantoms.to_dicom(phantom, patient_name="Secret^Person", patient_id="ID-998877")
    for broken in (whole[:400], whole[: len(whole) - 100]):
        with pytest.raises((UnprocessableInput, UnsupportedMediaType)) as caught:
            decode_image(broken, max_pixels=LIMIT, max_bytes=BUDGET)
        assert "Secret" not in caught.value.message and "998877" not in caught.value.message
