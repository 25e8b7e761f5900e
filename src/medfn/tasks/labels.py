"""Turning class scores into ranked labels: shared by every classification task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from medfn.serving.model import Model


def classes(probabilities: np.ndarray, labels: list[str]) -> tuple[str, dict[str, float]]:
    """The likeliest label, and every label's probability, most likely first."""
    order = np.argsort(-probabilities, kind="stable")
    return labels[int(order[0])], {labels[i]: float(probabilities[i]) for i in order}


def activated(scores: np.ndarray, post: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """One output row -> (label, probabilities), as `[postprocessing]` says the model ends:
    probabilities already, logits (softmax), or sigmoid scores; a single sigmoid score stands for
    positive_label at or above threshold, and the other label below it. Multi-label models
    (independent scores) are read by `present` instead."""
    labels = list(post["labels"])
    activation = post.get("activation", "none")
    if post.get("multi_label", False):
        by_label = independent(scores, post)
        found = present(by_label, post)
        return (found[0] if found else "none"), by_label
    if activation == "sigmoid" and scores.size == 1:
        p = float(1.0 / (1.0 + np.exp(-float(scores.ravel()[0]))))
        positive = str(post.get("positive_label", labels[-1]))
        negative = next(label for label in labels if label != positive)
        label = positive if p >= float(post.get("threshold", 0.5)) else negative
        return label, {positive: p, negative: 1.0 - p} if p >= 0.5 else {negative: 1.0 - p, positive: p}
    if activation == "softmax":
        scores = softmax(scores)
    elif activation == "sigmoid":  # one score per class: normalised so that they sum to 1
        sigmoid = 1.0 / (1.0 + np.exp(-scores))
        scores = sigmoid / sigmoid.sum()
    return classes(scores, labels)


def independent(scores: np.ndarray, post: dict[str, Any]) -> dict[str, float]:
    """A multi-label row: each label's own probability (they need not sum to 1), likeliest first."""
    if post.get("activation", "none") == "sigmoid":
        scores = 1.0 / (1.0 + np.exp(-scores))
    order = np.argsort(-scores, kind="stable")
    return {str(post["labels"][i]): float(scores[i]) for i in order}


def present(by_label: dict[str, float], post: dict[str, Any]) -> list[str]:
    """The labels of a multi-label row at or above the threshold, likeliest first."""
    return [label for label, p in by_label.items() if p >= float(post.get("threshold", 0.5))]


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
    single = post.get("activation") == "sigmoid" and classes == 1
    if single and (len(labels) != 2 or post.get("positive_label", labels[-1]) not in labels):
        return ["[postprocessing] a single sigmoid score needs two labels, positive_label one of them"]
    if classes is not None and classes != len(labels) and not single:
        return [f"[postprocessing] has {len(labels)} labels; output {name!r} has {classes} classes"]
    return []
