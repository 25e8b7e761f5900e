"""An image task's map -> the `Explanation` an answer carries: the raw low-resolution map, and
the map over the scan as a PNG (base64 in JSON, bytes beside it for files)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from medfn.explain.maps import for_json, onto_image, relative, upsample
from medfn.explain.overlay import OVERLAY_MAX_SIDE, overlay_png
from medfn.serving.model import Explanation, Prediction


def image_explanation(
    prediction: Prediction,
    method: str,
    values: np.ndarray,
    pixels: np.ndarray,
    preprocessing: dict[str, Any],
    extra: dict[str, Any],
    *,
    absolute: bool = False,
    max_side: int = OVERLAY_MAX_SIDE,
) -> Explanation:
    """`values`: (rows, columns) over the model's input grid, at any resolution. `pixels`: the
    decoded scan, (H, W) or (H, W, 3) on [0, 1]. absolute: the values are probabilities, shown
    as they are; otherwise the overlay shows them relative to their largest positive value.
    max_side: the overlay's longest side; a larger scan is shown averaged down to it."""
    height, width = pixels.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    shown = max(1, round(height * scale)), max(1, round(width * scale))
    grid = (int(preprocessing["size"][0]), int(preprocessing["size"][1]))
    aspect = str(preprocessing.get("aspect", "stretch"))
    heat = onto_image(values, grid, shown, aspect)
    heat = np.clip(heat, 0.0, 1.0) if absolute else relative(heat)
    gray = pixels[..., :3] @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32) if pixels.ndim == 3 else pixels
    png = overlay_png(upsample(gray, *shown), heat)
    low = for_json(values)
    details: dict[str, Any] = {
        **extra,
        "map": low,
        "map_shape": [len(low), len(low[0]) if low else 0],
        "map_covers": "the model's input grid",
        "overlay_png_base64": base64.b64encode(png).decode("ascii"),
        "overlay_shape": [shown[0], shown[1]],
    }
    return Explanation(prediction=prediction, method=method, details=details, overlay=png)
