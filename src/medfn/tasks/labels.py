"""Turning class scores into ranked labels: shared by every classification task."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from medfn.serving.model import Model


def classes(probabilities: np.ndarray, labels: list[str]) -> tuple[str, dict[str, float]]:
    """The likeliest label, and every label's probability, most likely first."""
    order = np.argsort(-probabilities, kind="stable")
    return labels[int(order[0])], {labels[i]: float(probabilities[i]) for i in order}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    probabilities: np.ndarray = shifted / shifted.sum()
    return probabilities


def label_problems(model: Model) -> list[str]:
    """`[postprocessing] labels` against the output the task reads: one label per class."""
    post = model.config.postprocessing
    name = post.get("output", model.config.outputs[0].name if model.config.outputs else "")
    spec = next((t for t in model.config.outputs if t.name == name), None)
    if spec is None:
        return [f"[postprocessing] output {name!r} is not a declared output"]
    labels = post.get("labels")
    if not isinstance(labels, list) or not labels:
        return ["[postprocessing] labels must list the classes, in the output's order"]
    classes = model.known_dim(spec, -1)
    if classes is not None and classes != len(labels):
        return [f"[postprocessing] has {len(labels)} labels; output {name!r} has {classes} classes"]
    return []
