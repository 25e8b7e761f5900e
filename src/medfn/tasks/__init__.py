"""Task types: what turns a request into tensors and tensors into an answer.

Each task lives in its own module and is imported only when a model of that task is
loaded, so a text model's function never imports Pillow and an image model's never
imports a tokenizer.
"""

from __future__ import annotations

import importlib

from medfn.serving.model import Model

__all__ = ["TASKS", "model_class"]

# task name (model.toml `task`) -> "module:class"
TASKS: dict[str, str] = {
    "tensor": "medfn.serving.model:Model",
    "image_classification": "medfn.tasks.image_classification:ImageClassifier",
    "image_segmentation": "medfn.tasks.image_segmentation:ImageSegmenter",
    "text_classification": "medfn.tasks.text_classification:TextClassifier",
    "tabular_classification": "medfn.tasks.tabular_classification:TabularClassifier",
    "timeseries_risk": "medfn.tasks.timeseries_risk:TimeSeriesRisk",
    "volume_segmentation": "medfn.tasks.volume_segmentation:VolumeSegmenter",
}


def model_class(task: str) -> type[Model]:
    try:
        module_name, _, class_name = TASKS[task].partition(":")
    except KeyError:
        raise ValueError(f"unknown task {task!r}; known tasks: {sorted(TASKS)}") from None
    cls: type[Model] = getattr(importlib.import_module(module_name), class_name)
    return cls
