"""Image classification: labels with probabilities, most likely first."""

from __future__ import annotations

from typing import Any

import numpy as np

from medfn.codecs import DecodedImage
from medfn.serving.model import Payload, Prediction
from medfn.tasks.imaging import ImageModel
from medfn.tasks.labels import activated, label_problems, present


class ImageClassifier(ImageModel):
    details_key = "classes"  # multi-label: the labels present

    def task_problems(self) -> list[str]:
        return super().task_problems() + label_problems(self)

    def postprocess(self, outputs: dict[str, np.ndarray], context: Any, payload: Payload) -> Prediction:
        post = self.config.postprocessing
        scores = self.first(outputs[post.get("output", self.config.outputs[0].name)])
        image: DecodedImage
        image, warnings = context
        label, by_label = activated(scores, post)
        details = {"present": present(by_label, post)} if post.get("multi_label", False) else {}
        return Prediction(label, by_label, details, warnings=warnings, sop_instance_uid=image.sop_instance_uid)
