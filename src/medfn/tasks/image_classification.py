"""Image classification: labels with probabilities, most likely first; and why (medfn.explain).

A graph that exports class activation maps (model.toml `[explain] output`) is explained by them
("grad-cam", one run); any other by occlusion sensitivity ("occlusion", one batched run).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from medfn.codecs import DecodedImage
from medfn.serving.model import Payload, Prediction
from medfn.tasks.imaging import ImageModel
from medfn.tasks.labels import activated, label_problems, present


class ImageClassifier(ImageModel):
    details_key = "classes"  # multi-label: the labels present

    def task_problems(self) -> list[str]:
        return super().task_problems() + label_problems(self) + self._explain_problems()

    def postprocess(self, outputs: dict[str, np.ndarray], context: Any, payload: Payload) -> Prediction:
        post = self.config.postprocessing
        scores = self.first(outputs[post.get("output", self.config.outputs[0].name)])
        image: DecodedImage
        image, warnings = context
        label, by_label = activated(scores, post)
        details = {"present": present(by_label, post)} if post.get("multi_label", False) else {}
        return Prediction(label, by_label, details, warnings=warnings, sop_instance_uid=image.sop_instance_uid)

    # -- explanations --------------------------------------------------------------------------

    def saliency(
        self, inputs: dict[str, np.ndarray], context: Any, payload: Payload
    ) -> tuple[Prediction, str, np.ndarray, dict[str, Any]]:
        output = self.config.explain.get("output")
        if output:
            return self._class_activation(inputs, context, payload, str(output))
        return self._occlusion(inputs, context, payload)

    def _class_activation(
        self, inputs: dict[str, np.ndarray], context: Any, payload: Payload, output: str
    ) -> tuple[Prediction, str, np.ndarray, dict[str, Any]]:
        """The prediction and its saliency output from one run."""
        from medfn.explain.cam import class_activation

        names = [spec.name for spec in self.config.answered_outputs]
        started = time.perf_counter()
        outputs = self.run(inputs, [*names, output])
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        prediction = self.finish({name: outputs[name] for name in names}, context, payload, elapsed_ms)
        label, index, sign = self._explained(prediction)
        post = self.config.postprocessing
        contrastive = not post.get("multi_label", False)
        values = class_activation(self.first(outputs[output]), index, contrastive=contrastive, sign=sign)
        return prediction, "grad-cam", values, {"label": label, "output": output}

    def _occlusion(
        self, inputs: dict[str, np.ndarray], context: Any, payload: Payload
    ) -> tuple[Prediction, str, np.ndarray, dict[str, Any]]:
        """The image and its occluded copies in one run; the map is how far each copy's
        probability of the answer fell."""
        from medfn.explain.occlusion import occluded_copies, occlusion_grid, sensitivity

        grid, fill = occlusion_grid(self.config.explain)  # checked at load (task_problems)
        name = self.config.inputs[0].name
        one = inputs[name][0] if self.batched else inputs[name]
        channels_first = self.config.preprocessing.get("layout", "NCHW") == "NCHW"
        copies = occluded_copies(one.transpose(1, 2, 0) if channels_first else one, grid, fill)
        stacked = np.concatenate([one[np.newaxis], copies.transpose(0, 3, 1, 2) if channels_first else copies])
        started = time.perf_counter()
        rows = self._run_rows(name, stacked.astype(np.float32))
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        first = {key: value[:1] if self.batched else value[0] for key, value in rows.items()}
        prediction = self.finish(first, context, payload, elapsed_ms)
        label, _, _ = self._explained(prediction)
        post = self.config.postprocessing
        scores = rows[post.get("output", self.config.outputs[0].name)][1:]
        hidden = [activated(row, post)[1][label] for row in scores]
        values = sensitivity(prediction.probabilities[label], np.asarray(hidden), grid)
        return prediction, "occlusion", values, {"label": label, "grid": [grid, grid], "fill": fill}

    def _run_rows(self, name: str, stacked: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for every row of `stacked`: one run where the graph has a batch axis, else one
        run a row. Not through a dynamic batcher: these rows are one request's."""
        names = [spec.name for spec in self.config.answered_outputs]
        if self.batched:
            return self.refuse_non_finite(self.execute({name: stacked}, names))
        runs = [self.refuse_non_finite(self.execute({name: row}, names)) for row in stacked]
        return {key: np.stack([run[key] for run in runs]) for key in names}

    def _explained(self, prediction: Prediction) -> tuple[str, int, float]:
        """(the label explained, its class in the output, +1 or -1): the answer's label; for a
        multi-label "none", the likeliest label; a single sigmoid score is read with sign -1 for
        its negative label."""
        post = self.config.postprocessing
        labels = [str(label) for label in post["labels"]]
        label = prediction.label if prediction.label in labels else next(iter(prediction.probabilities))
        spec = next(t for t in self.config.outputs if t.name == post.get("output", self.config.outputs[0].name))
        if post.get("activation") == "sigmoid" and self.known_dim(spec, -1) == 1:
            return label, 0, 1.0 if label == str(post.get("positive_label", labels[-1])) else -1.0
        return label, labels.index(str(label)), 1.0

    def _explain_problems(self) -> list[str]:
        """`[explain]` against the graph: a saliency output (N, classes, rows, columns), or a
        bounded occlusion grid."""
        from medfn.explain.occlusion import occlusion_grid

        explain = self.config.explain
        output = explain.get("output")
        if output is None:
            try:
                occlusion_grid(explain)
            except ValueError as exc:
                return [str(exc)]
            return []
        spec = next((t for t in self.config.outputs if t.name == output), None)
        if spec is None:
            return [f"[explain] output {output!r} is not a declared output"]
        rank = 4 if self.batched else 3
        if len(spec.shape) != rank:
            return [f"[explain] output {output!r} must be class maps, [N, classes, rows, columns] (rank {rank})"]
        return []
