"""The shared pieces of medfn.explain, each on a case whose answer is known."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medfn.explain.cam import class_activation
from medfn.explain.maps import for_json, onto_image, relative, upsample
from medfn.explain.occlusion import MAX_OCCLUDED_COPIES, occluded_copies, occlusion_grid, sensitivity
from medfn.explain.overlay import heat_colours, overlay_png


def test_upsampling_keeps_the_peak_where_it_was() -> None:
    values = np.zeros((8, 8), np.float32)
    values[2, 5] = 1.0
    big = upsample(values, 128, 128)
    row, col = np.unravel_index(int(np.argmax(big)), big.shape)
    assert abs(row - (2 * 16 + 8)) <= 1 and abs(col - (5 * 16 + 8)) <= 1  # the cell's centre


def test_relative_keeps_evidence_for_the_answer_only() -> None:
    assert relative(np.asarray([[-2.0, 0.0, 1.0, 4.0]])).tolist() == [[0.0, 0.0, 0.25, 1.0]]
    assert relative(np.asarray([[-1.0, -3.0]])).tolist() == [[0.0, 0.0]]


def test_maps_return_onto_the_scan_as_it_was_fitted() -> None:
    values = np.zeros((4, 4), np.float32)
    values[0, 0] = 1.0  # the grid's top-left corner
    stretched = onto_image(values, (64, 64), (100, 50), "stretch")
    assert stretched.shape == (100, 50) and stretched[:20, :10].mean() > stretched[-20:, -10:].mean()
    # A 100x50 scan padded into a 64x64 grid fills its middle 32 columns: the grid's left
    # quarter was padding, so the corner's value barely reaches the scan.
    padded = onto_image(values, (64, 64), (100, 50), "pad")
    assert padded.shape == (100, 50) and padded.max() < 0.5
    # Cropped: the grid saw the scan's middle 50x50; the rest of the scan gets 0.
    cropped = onto_image(values, (64, 64), (100, 50), "crop")
    assert cropped.shape == (100, 50) and cropped[:25].max() == 0 and cropped[25:75].max() > 0.5


def test_json_map_is_bounded() -> None:
    assert np.asarray(for_json(np.ones((256, 128)))).shape == (64, 32)
    assert np.asarray(for_json(np.ones((16, 16)))).shape == (16, 16)


def test_class_activation_is_contrastive_for_a_softmax() -> None:
    saliency = np.stack([np.full((2, 2), 3.0), np.asarray([[1.0, 5.0], [3.0, 3.0]])]).astype(np.float32)
    assert class_activation(saliency, 1, contrastive=True).tolist() == [[-1.0, 1.0], [0.0, 0.0]]
    assert class_activation(saliency, 1, contrastive=False).tolist() == [[1.0, 5.0], [3.0, 3.0]]
    with pytest.raises(ValueError):
        class_activation(saliency, 2, contrastive=True)


def test_occlusion_grid_is_bounded() -> None:
    assert occlusion_grid({}) == (8, "blur")
    assert occlusion_grid({"occlusion_grid": 4, "occlusion_fill": "mean"}) == (4, "mean")
    for bad in ({"occlusion_grid": 9}, {"occlusion_grid": 0}, {"occlusion_grid": "8"}, {"occlusion_fill": "zero"}):
        with pytest.raises(ValueError):
            occlusion_grid(bad)
    assert 8 * 8 == MAX_OCCLUDED_COPIES


def test_each_copy_hides_the_window_around_one_cell() -> None:
    image = np.random.default_rng(0).uniform(size=(30, 20, 1)).astype(np.float32)
    copies = occluded_copies(image, 3, "mean")
    assert copies.shape == (9, 30, 20, 1)
    changed = [np.argwhere((copy != image)[..., 0]) for copy in copies]
    # cells of 10 x 6-7 pixels (edges 0, 7, 13, 20); a window reaches half a cell beyond its own
    assert changed[0].min(axis=0).tolist() == [0, 0] and changed[0].max(axis=0).tolist() == [14, 9]
    assert changed[8].min(axis=0).tolist() == [15, 10] and changed[8].max(axis=0).tolist() == [29, 19]
    assert changed[4].min(axis=0).tolist() == [5, 4] and changed[4].max(axis=0).tolist() == [24, 15]
    assert np.allclose(copies[4][5:25, 4:16], image.mean())
    assert sensitivity(0.9, np.asarray([0.9] * 4 + [0.1] + [0.9] * 4), 3)[1, 1] == pytest.approx(0.8)


def test_overlay_png_shows_the_scan_where_the_map_is_cold() -> None:
    gray = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    heat = np.zeros_like(gray)
    heat[:8, :8] = 1.0
    pixels = np.asarray(Image.open(io.BytesIO(overlay_png(gray, heat))))
    assert pixels.shape == (32, 32, 3)
    assert np.array_equal(pixels[20:, 20:, 0], pixels[20:, 20:, 2])  # untouched gray
    assert pixels[0, 0, 0] > pixels[0, 0, 2]  # hot: red over the dark corner
    colours = heat_colours(np.asarray([[0.0, 1.0]]))
    assert colours[0, 0, 2] > colours[0, 0, 0] and colours[0, 1, 0] > colours[0, 1, 2]  # blue cold, red hot
