"""Image classification: labels with probabilities, most likely first."""

from __future__ import annotations

from typing import Any

import numpy as np

from medfn.codecs import DecodedImage
from medfn.serving.model import Payload, Prediction
from medfn.tasks.imaging import ImageModel
from medfn.tasks.labels import activated, label_problems


class ImageClassifier(ImageModel):
    def task_problems(self) -> list[str]:
        return super().task_problems() + label_problems(self)

    def postprocess(self, outputs: dict[str, np.ndarray], context: Any, payload: Payload) -> Prediction:
        post = self.config.postprocessing
        scores = outputs[post.get("output", self.config.outputs[0].name)][0]
        image: DecodedImage
        image, warnings = context
        return Prediction(*activated(scores, post), warnings=warnings, sop_instance_uid=image.sop_instance_uid)
