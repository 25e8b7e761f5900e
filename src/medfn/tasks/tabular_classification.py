"""Tabular classification: one record of named features (or a batch) -> label and probability."""

from __future__ import annotations

from typing import Any

import numpy as np

from medfn.errors import UnprocessableInput
from medfn.serving.model import Model, Payload, Prediction
from medfn.tasks.guards import Guards
from medfn.tasks.labels import activated, label_problems
from medfn.tasks.records import feature_problems, feature_row, load_json


class TabularClassifier(Model):
    """Body: `{"feature": value, ...}`, or `{"records": [{...}, ...]}` for a batch."""

    media_types = frozenset({"application/json"})
    details_key = "records"  # a batch: one label and its probabilities per record, in order

    def task_problems(self) -> list[str]:
        features = self.config.preprocessing.get("features")
        problems = label_problems(self) + feature_problems(self, features)
        problems += Guards(self.config.guards).problems(features if isinstance(features, list) else [])
        post = self.config.postprocessing
        positive = post.get("positive_label")
        if positive is not None and positive not in post.get("labels", []):
            problems.append(f"[postprocessing] positive_label {positive!r} is not one of the labels")
        return problems

    def request_body(self) -> dict[str, Any] | None:
        features = list(self.config.preprocessing.get("features", []))
        record = {
            "type": "object",
            "required": features,
            "additionalProperties": False,
            "properties": {name: {"type": "number"} for name in features},
        }
        records = {"type": "array", "minItems": 1, "maxItems": self.config.max_batch_size or 1, "items": record}
        batch = {"type": "object", "required": ["records"], "properties": {"records": records}}
        return {"required": True, "content": {"application/json": {"schema": {"oneOf": [record, batch]}}}}

    def preprocess(self, payload: Payload) -> tuple[dict[str, np.ndarray], Any]:
        features = list(self.config.preprocessing["features"])
        document = load_json(payload.data)
        batch = isinstance(document, dict) and "records" in document
        records = document["records"] if batch else [document]
        if not isinstance(records, list) or not records:
            raise UnprocessableInput('"records" must be a non-empty list of objects')
        limit = self.config.max_batch_size or 1
        if len(records) > limit:
            raise UnprocessableInput(f"at most {limit} records per request")
        wheres = [f"record {i}: " if batch else "" for i in range(len(records))]
        rows = [feature_row(r, features, where) for r, where in zip(records, wheres, strict=True)]
        warnings = Guards(self.config.guards).ranges(features, rows, [f"{where}feature " for where in wheres])
        return {self.config.inputs[0].name: np.asarray(rows, dtype=np.float32)}, (batch, warnings)

    def postprocess(self, outputs: dict[str, np.ndarray], context: Any, payload: Payload) -> Prediction:
        post = self.config.postprocessing
        rows = [activated(p, post) for p in outputs[post.get("output", self.config.outputs[0].name)]]
        batch, warnings = context
        if not batch:
            return Prediction(*rows[0], warnings=warnings)
        records = [{"label": label, "probabilities": by_label} for label, by_label in rows]
        return Prediction(None, details={"predictions": records}, warnings=warnings)
