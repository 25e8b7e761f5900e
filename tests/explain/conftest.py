"""Fixtures for the explanation tests: the served scan classifier, and opacity phantoms drawn with
a seed no training or other test uses, with the masks of the nodules they draw."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pytest

from medfn.serving import Model
from model_store.build import chest_phantoms

FRESH_SEED = 86420  # never used to train, check or test anything else


@pytest.fixture(scope="session")
def classifier(classifier_handler: Any) -> Model:
    model: Model = classifier_handler.function.plane.get("scan_classifier")
    model.ensure_ready()
    return model


@pytest.fixture(scope="session")
def occluding_classifier(classifier: Model) -> Model:
    """The same graph served as one without class maps would be: explained by occlusion."""
    model = copy.copy(classifier)
    config = classifier.config
    outputs = tuple(spec for spec in config.outputs if spec.name != config.explain.get("output"))
    model.config = dataclasses.replace(config, explain={"occlusion_grid": 8}, outputs=outputs)
    assert model.task_problems() == []
    return model


@pytest.fixture(scope="session")
def opacities() -> tuple[np.ndarray, np.ndarray]:
    """80 opacity phantoms at 128 pixels, 8-bit as a PNG holds them, and their nodule masks."""
    images, labels, masks = chest_phantoms.generate_with_masks(160, FRESH_SEED, 128)
    keep = labels == 1
    quantized = np.round(np.clip(images[keep], 0, 1) * 255) / 255
    return quantized.astype(np.float32), masks[keep]


def near(mask: np.ndarray, row: int, col: int, pixels: float) -> bool:
    """Whether (row, col) lies inside `mask` dilated by `pixels` (Euclidean)."""
    rows, cols = np.nonzero(mask)
    return bool(rows.size) and float(np.hypot(rows - row, cols - col).min()) <= pixels
