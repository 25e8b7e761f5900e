"""A saliency output asked of a model that batches requests: served outside the batches, whose
runs compute only the outputs answered by default."""

from __future__ import annotations

import asyncio
import copy
import dataclasses

import numpy as np

from medfn.serving import InferencePlane, Model, Payload
from model_store.build import chest_phantoms


def test_saliency_and_explain_beside_a_dynamic_batcher(classifier: Model) -> None:
    model = copy.copy(classifier)
    model.config = dataclasses.replace(classifier.config, dynamic_batching={"max_queue_delay_ms": 1.0})
    model.batcher = None
    plane = InferencePlane()
    plane.add("scan_classifier", [model])
    (batcher,) = plane.start_batchers()
    try:
        image = chest_phantoms.generate(2, seed=6067)[0][1]
        inputs = {"image": image[np.newaxis, np.newaxis].astype(np.float32)}
        plain = asyncio.run(plane.infer(model, inputs))
        named = asyncio.run(plane.infer(model, inputs, ["probabilities", "saliency"]))
        explained = asyncio.run(plane.explain(model, Payload(chest_phantoms.to_png(image), "image/png")))
    finally:
        plane.stop_batchers()
    assert list(plain) == ["probabilities"] and named["saliency"].shape == (1, 2, 16, 16)
    assert np.allclose(plain["probabilities"], named["probabilities"], atol=1e-6)
    assert explained.method == "grad-cam" and explained.prediction.label == "opacity"
    assert batcher.stats.snapshot().requests == 1  # only the plain request went through a batch
