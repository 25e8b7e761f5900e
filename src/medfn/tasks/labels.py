"""Turning class scores into ranked labels: shared by every classification task."""

from __future__ import annotations

from typing import Any

import numpy as np


def ranked_labels(probabilities: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
    """`[{"label", "probability"}, ...]`, most likely first."""
    order = np.argsort(-probabilities, kind="stable")
    return [{"label": labels[i], "probability": float(probabilities[i])} for i in order]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    probabilities: np.ndarray = shifted / shifted.sum()
    return probabilities
