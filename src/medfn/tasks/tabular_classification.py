"""Tabular classification: one record of named features (or a batch) -> label and probability.

`explain` weighs each feature of one record by baseline replacement: the record, and one copy
per feature with that feature set to its `[explain] baseline` (the training median), run as one
batch; a feature's weight is how much the replacement lowers the answered class's probability.
It says what this model does with this record measured against a typical training record, one
feature at a time: features that act only together (two correlated measurements, each enough
alone) may each weigh little.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medfn.errors import UnprocessableInput
from medfn.serving.model import Explanation, Model, Payload, Prediction
from medfn.tasks.guards import Guards
from medfn.tasks.labels import activated, label_problems
from medfn.tasks.options import explain_problems
from medfn.tasks.records import (
    baseline_problems,
    class_drops,
    explain_batch_problems,
    feature_problems,
    feature_row,
    first_row,
    load_json,
    run_variants,
    weight,
)


class TabularClassifier(Model):
    """Body: `{"feature": value, ...}`, or `{"records": [{...}, ...]}` for a batch."""

    media_types = frozenset({"application/json"})
    details_key = "records"  # a batch: one label and its probabilities per record, in order

    def task_problems(self) -> list[str]:
        features = self.config.preprocessing.get("features")
        problems = label_problems(self) + feature_problems(self, features)
        problems += Guards(self.config.guards).problems(features if isinstance(features, list) else [])
        problems += explain_problems(self.config.task, self.config.explain) or explain_batch_problems(self)
        problems += baseline_problems(self, features) if isinstance(features, list) else []
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

    def explain(self, payload: Payload) -> Explanation:
        """The prediction, and each feature's `{"name", "weight", "value", "baseline"}`, the
        features that moved the answer most (either way) first. One record a request."""
        baseline = self.config.explain.get("baseline")
        if baseline is None:
            return super().explain(payload)  # no baseline in model.toml: this model cannot explain
        inputs, context = self.prepare(payload)
        row = inputs[self.config.inputs[0].name]
        if len(row) != 1:
            raise UnprocessableInput(f"explain takes one record a request; this body has {len(row)}")
        features = list(self.config.preprocessing["features"])
        variants = np.repeat(row, len(features) + 1, axis=0)  # the record, then one copy per feature
        variants[np.arange(1, len(features) + 1), np.arange(len(features))] = np.asarray(baseline, dtype=np.float32)
        outputs, inference_ms, runs = run_variants(self, variants)
        prediction = self.finish(first_row(outputs), context, payload, inference_ms)
        post = self.config.postprocessing
        target, weights = class_drops(outputs[post.get("output", self.config.outputs[0].name)], post)
        attributions = [
            {"name": name, "weight": weight(w), "value": float(str(value)), "baseline": float(base)}
            for name, w, value, base in zip(features, weights, row[0], baseline, strict=True)
        ]
        attributions.sort(key=lambda a: -abs(float(a["weight"])))
        details = {"target": target, "features": attributions, "variants": len(features), "runs": runs}
        return Explanation(prediction, "baseline-replacement", details)
