"""Class activation maps from a graph's saliency output (model.toml `[explain] output`).

A classifier whose head is linear over globally pooled features exports, beside its scores, the
head's weights times the last feature map: (classes, rows, columns) for one image. A class's
map says where the evidence for its score lies; for such a head it equals Grad-CAM.
"""

from __future__ import annotations

import numpy as np


def class_activation(saliency: np.ndarray, index: int, *, contrastive: bool, sign: float = 1.0) -> np.ndarray:
    """One image's (classes, rows, columns) -> the (rows, columns) map of class `index`.

    contrastive: the classes share a softmax, so only differences between their scores count;
    the map is the class's less the mean of all classes' (evidence for it over the others).
    sign -1 reads a single score's map as evidence for the other label (a sigmoid's negative).
    """
    if saliency.ndim != 3 or not 0 <= index < saliency.shape[0]:
        raise ValueError(f"saliency of shape {list(saliency.shape)} has no class {index}")
    values = saliency[index] - saliency.mean(axis=0) if contrastive and saliency.shape[0] > 1 else saliency[index]
    signed: np.ndarray = (sign * values).astype(np.float32)
    return signed
