"""Image classification: labels with probabilities, most likely first."""

from __future__ import annotations

from typing import Any

import numpy as np

from medfn.codecs import DecodedImage
from medfn.serving.model import Payload, Prediction
from medfn.tasks.imaging import ImageModel
from medfn.tasks.labels import label_problems, ranked_labels, softmax


class ImageClassifier(ImageModel):
    def task_problems(self) -> list[str]:
        return super().task_problems() + label_problems(self)

    def postprocess(self, outputs: dict[str, np.ndarray], context: Any, payload: Payload) -> Prediction:
        post = self.config.postprocessing
        scores = outputs[post.get("output", self.config.outputs[0].name)][0]
        probabilities = softmax(scores) if post.get("softmax", False) else scores
        ranked = ranked_labels(probabilities, list(post["labels"]))
        body: dict[str, Any] = {"top_label": ranked[0]["label"], "labels": ranked}
        image: DecodedImage
        image, warnings = context
        if image.sop_instance_uid:
            body["sop_instance_uid"] = image.sop_instance_uid  # links back without demographics
        return Prediction(body=body, warnings=warnings)
