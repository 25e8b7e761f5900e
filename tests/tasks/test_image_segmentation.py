"""The segmenter at any size: phantoms made at 128, 256 and 512 pixels across (the same anatomy,
finer pixels) come back with masks on the caller's own grid, as good as at the training size,
and an area in mm² from the file's PixelSpacing."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from model_store.build import ct_phantoms

FIELD_MM = 0.7 * ct_phantoms.TRAINING_SIZE  # the same field of view at every size


def dice_at(client: TestClient, size: int) -> tuple[float, list[tuple[int, float, float]]]:
    hu, masks = ct_phantoms.generate(8, seed=2024, size=size)
    spacing = FIELD_MM / size
    dices, areas = [], []
    for slice_hu, truth in zip(hu, masks, strict=True):
        answer = client.post(
            "/v1/models/scan_segmenter/predict",
            content=ct_phantoms.to_dicom(slice_hu, pixel_spacing=(spacing, spacing)),
            headers={"content-type": "application/dicom"},
        ).json()["mask"]
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["mask_png_base64"])))) > 0
        assert mask.shape == (size, size) and answer["rle"]["size"] == [size, size]
        areas.append((answer["area_px"], answer["area_mm2"], spacing))
        if truth.any():
            dices.append(2 * (mask & (truth > 0)).sum() / (mask.sum() + truth.sum()))
    return float(np.mean(dices)), areas


@pytest.fixture(scope="module")
def native(gateway_client: TestClient) -> float:
    return dice_at(gateway_client, ct_phantoms.TRAINING_SIZE)[0]


@pytest.mark.parametrize("size", [256, 384, 512])
def test_masks_at_other_sizes_are_as_good_as_at_the_training_size(
    gateway_client: TestClient, native: float, size: int
) -> None:
    dice, areas = dice_at(gateway_client, size)
    assert native > 0.95 and dice >= native - 0.05, (size, dice, native)
    for area_px, area_mm2, spacing in areas:
        assert area_mm2 == pytest.approx(area_px * spacing * spacing, abs=1e-3)


def test_a_scan_coarser_than_the_model_reads_is_answered_with_a_warning(gateway_client: TestClient) -> None:
    hu, _ = ct_phantoms.generate(1, seed=2025, size=96)
    answer = gateway_client.post(
        "/v1/models/scan_segmenter/predict",
        content=ct_phantoms.to_dicom(hu[0]),
        headers={"content-type": "application/dicom"},
    ).json()
    assert answer["warnings"] == [
        "the image is 96x96 pixels, coarser than the 128x128 the model reads; it was enlarged"
    ]
