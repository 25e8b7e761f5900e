"""Fitting a decoded image to a model's input size, as the model was trained: the resize method,
antialiasing, and how another aspect ratio is kept (`[preprocessing]` resize, antialias, aspect).

A model trained on nearest-neighbour resizes and served with bilinear ones sees other pixels and
can flip its label; so the method is configuration, never a fixed choice of the server.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_PILLOW = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def fit(pixels: np.ndarray, height: int, width: int, resize: str, antialias: bool, aspect: str) -> np.ndarray:
    """(H, W, C) float32 -> (height, width, C) float32."""
    if aspect == "crop":
        pixels = _centre_crop(pixels, height / width)
    if aspect == "pad":
        scale = min(height / pixels.shape[0], width / pixels.shape[1])
        inner = max(1, round(pixels.shape[0] * scale)), max(1, round(pixels.shape[1] * scale))
        fitted = _resized(pixels, inner[0], inner[1], resize, antialias)
        canvas = np.zeros((height, width, pixels.shape[2]), dtype=np.float32)
        top, left = (height - inner[0]) // 2, (width - inner[1]) // 2
        canvas[top : top + inner[0], left : left + inner[1]] = fitted
        return canvas
    return _resized(pixels, height, width, resize, antialias)


def _centre_crop(pixels: np.ndarray, ratio: float) -> np.ndarray:
    """The largest centred window whose height / width is `ratio`."""
    rows, cols = pixels.shape[:2]
    if rows / cols > ratio:
        keep = max(1, round(cols * ratio))
        top = (rows - keep) // 2
        return pixels[top : top + keep]
    keep = max(1, round(rows / ratio))
    left = (cols - keep) // 2
    return pixels[:, left : left + keep]


def _resized(pixels: np.ndarray, height: int, width: int, resize: str, antialias: bool) -> np.ndarray:
    if pixels.shape[:2] == (height, width):
        return pixels.astype(np.float32, copy=False)
    channels = [_channel(pixels[..., c], height, width, resize, antialias) for c in range(pixels.shape[2])]
    return np.stack(channels, axis=-1)


def _channel(channel: np.ndarray, height: int, width: int, resize: str, antialias: bool) -> np.ndarray:
    shrinking = channel.shape[0] >= height and channel.shape[1] >= width
    if resize == "area":
        # Shrinking averages each output pixel's area, as a coarser detector would have measured
        # it (texture and noise as on the training grid); enlarging interpolates bilinearly.
        method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    elif resize == "bilinear" and not antialias and shrinking:
        return _point_bilinear(channel, height, width)
    else:
        method = _PILLOW[resize]  # Pillow's bilinear and bicubic average over the source when shrinking
    image = Image.fromarray(channel.astype(np.float32, copy=False), mode="F")
    return np.asarray(image.resize((width, height), method), dtype=np.float32)


def _point_bilinear(channel: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear from the four nearest source pixels at each output pixel's centre (half-pixel
    centres), without averaging over the source: TensorFlow's and PyTorch's default resize."""

    def grid(out: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        at = np.clip((np.arange(out) + 0.5) * size / out - 0.5, 0.0, size - 1.0)
        low = np.floor(at).astype(np.intp)
        return low, np.minimum(low + 1, size - 1), (at - low).astype(np.float32)

    y0, y1, wy = grid(height, channel.shape[0])
    x0, x1, wx = grid(width, channel.shape[1])
    top = channel[y0][:, x0] * (1 - wx) + channel[y0][:, x1] * wx
    bottom = channel[y1][:, x0] * (1 - wx) + channel[y1][:, x1] * wx
    blended: np.ndarray = top * (1 - wy)[:, None] + bottom * wy[:, None]
    return blended.astype(np.float32)
