"""The heat map over the scan, as a PNG: a colour map written out, and an alpha blend.

Rendering is most of what an explanation costs beyond the prediction (a 512-pixel RGB PNG takes
longer to encode than the scan classifier takes to answer), so the blend goes through 256-entry
tables: the map is read at 8 bits, as the PNG stores it anyway.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Colour stops (value, red, green, blue) of a blue -> cyan -> yellow -> red map: cold is dark
# blue, and value order reads in both hue and lightness up to yellow.
_STOPS = np.asarray(
    [
        (0.00, 0.05, 0.05, 0.45),
        (0.25, 0.00, 0.45, 1.00),
        (0.50, 0.10, 0.90, 0.80),
        (0.75, 1.00, 0.90, 0.10),
        (1.00, 0.85, 0.05, 0.05),
    ],
    dtype=np.float32,
)
# The longest side of an overlay by default (model.toml `[explain] overlay_max_side`); a larger
# scan is shown averaged down to it. Encoding is most of an overlay's cost, and it grows with the
# pixels: a noisy 512 x 512 RGB PNG took 18 ms on 2 shared cores, 256 x 256 about 4.5 ms (the
# scan classifier answers a 512-pixel DICOM in about 5 ms). The map itself is coarser still.
OVERLAY_MAX_SIDE = 256
# How much of the colour covers the scan where the map is at its top.
OPACITY = 0.6

_LEVELS = np.linspace(0.0, 1.0, 256, dtype=np.float32)
# Per 8-bit map level: the share of the scan kept (the colour's share added, _ADD, follows heat_colours).
_KEEP = (1.0 - OPACITY * _LEVELS).astype(np.float32)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """(H, W) values on [0, 1] -> (H, W, 3) float32 RGB on [0, 1]."""
    clipped = np.clip(values, 0.0, 1.0)
    channels = [np.interp(clipped, _STOPS[:, 0], _STOPS[:, c]) for c in (1, 2, 3)]
    return np.stack(channels, axis=-1).astype(np.float32)


_ADD = (OPACITY * _LEVELS[:, np.newaxis] * heat_colours(_LEVELS) * 255.0).astype(np.float32)


def overlay_png(gray: np.ndarray, heat: np.ndarray) -> bytes:
    """A grayscale scan (H, W) and a map of the same shape, both on [0, 1] -> an RGB PNG. Each
    pixel blends in the map's colour in proportion to its value: where the map is 0 the scan
    shows as it is."""
    level = np.round(np.clip(heat, 0.0, 1.0) * 255.0).astype(np.uint8)
    scan = np.clip(gray, 0.0, 1.0).astype(np.float32) * np.float32(255.0)
    blended = (scan * _KEEP[level])[..., np.newaxis] + _ADD[level]
    pixels = (blended + np.float32(0.5)).astype(np.uint8)  # both terms >= 0: + 0.5 then truncation rounds
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
