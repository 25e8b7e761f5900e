"""Maps between grids: a low-resolution map on the model's input grid, the scan's own pixels."""

from __future__ import annotations

import numpy as np
from PIL import Image

# The most cells a JSON answer's "map" holds on a side; a finer map is averaged down to it.
JSON_MAP_SIDE = 64


def upsample(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """A (rows, columns) map stretched to (height, width), bilinear between cell centres
    (a cell's value sits at its centre); averaged down where the target is coarser."""
    if values.shape == (height, width):
        return values.astype(np.float32, copy=False)
    image = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32), mode="F")
    shrinking = values.shape[0] >= height and values.shape[1] >= width
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return np.asarray(image.resize((width, height), method), dtype=np.float32)


def relative(values: np.ndarray) -> np.ndarray:
    """Evidence for the answer on [0, 1]: negative values (evidence against) become 0, the
    largest becomes 1. A map with no positive value is all 0."""
    positive = np.maximum(values, 0.0)
    top = float(positive.max(initial=0.0))
    return (positive / top).astype(np.float32) if top > 0 else np.zeros_like(values, dtype=np.float32)


def onto_image(values: np.ndarray, grid: tuple[int, int], image: tuple[int, int], aspect: str) -> np.ndarray:
    """A map over the model's input grid (any resolution) -> (height, width) of the scan, undoing
    how the scan was fitted to the grid ([preprocessing] aspect: stretch, pad or crop)."""
    height, width = image
    if aspect == "pad":  # the scan fills a centred window of the grid; the rest is padding
        on_grid = upsample(values, *grid)
        scale = min(grid[0] / height, grid[1] / width)
        inner = max(1, round(height * scale)), max(1, round(width * scale))
        top, left = (grid[0] - inner[0]) // 2, (grid[1] - inner[1]) // 2
        return upsample(on_grid[top : top + inner[0], left : left + inner[1]], height, width)
    if aspect == "crop":  # the grid saw only a centred window of the scan: the map is 0 outside it
        ratio = grid[0] / grid[1]
        if height / width > ratio:  # taller than the grid: its middle rows
            rows, cols = max(1, round(width * ratio)), width
        else:
            rows, cols = height, max(1, round(height / ratio))
        rows, cols = min(rows, height), min(cols, width)
        full = np.zeros((height, width), np.float32)
        top, left = (height - rows) // 2, (width - cols) // 2
        full[top : top + rows, left : left + cols] = upsample(values, rows, cols)
        return full
    return upsample(values, height, width)


def for_json(values: np.ndarray, digits: int = 4) -> list[list[float]]:
    """The low-resolution map as nested lists, at most JSON_MAP_SIDE cells a side."""
    rows, cols = values.shape
    scale = max(rows, cols) / JSON_MAP_SIDE
    if scale > 1:
        values = upsample(values, max(1, round(rows / scale)), max(1, round(cols / scale)))
    rounded: list[list[float]] = np.round(values.astype(np.float64), digits).tolist()
    return rounded
