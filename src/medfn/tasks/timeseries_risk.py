"""Time-series risk: a series of observations -> a risk score and band from the model.

With `[postprocessing] news2 = true`, the NEWS2 score of the latest observation, computed by
the published rules (medfn.tasks.news2), comes back beside the model's output, so a clinician can
compare the learned risk with the early-warning score they already use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medfn.errors import BadRequest, UnprocessableInput
from medfn.serving.model import Model, Payload, Prediction
from medfn.tasks import news2
from medfn.tasks.guards import Guards
from medfn.tasks.records import feature_problems, feature_row, load_json


class TimeSeriesRisk(Model):
    """Body: `{"observations": [{"<feature>": value, ...}, ...], "on_oxygen": false}`, oldest first."""

    media_types = frozenset({"application/json"})
    details_key = "risk"

    def request_body(self) -> dict[str, Any] | None:
        prep = self.config.preprocessing
        ranges: dict[str, list[float]] = prep.get("ranges", {})
        categories: dict[str, dict[str, float]] = prep.get("categories", {})

        def field(name: str) -> dict[str, Any]:
            number: dict[str, Any] = {"type": "number"}
            if name in ranges:
                number |= {"minimum": ranges[name][0], "maximum": ranges[name][1]}
            return {"oneOf": [number, {"enum": sorted(categories[name])}]} if name in categories else number

        features = list(prep.get("features", []))
        observation = {"type": "object", "required": features, "properties": {n: field(n) for n in features}}
        series = {
            "type": "array",
            "minItems": int(prep.get("min_length", 1)),
            "maxItems": int(prep.get("max_length", 48)),
            "items": observation,
            "description": "oldest first",
        }
        body = {
            "type": "object",
            "required": ["observations"],
            "properties": {"observations": series, "on_oxygen": {"type": "boolean", "default": False}},
        }
        return {"required": True, "content": {"application/json": {"schema": body}}}

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        """Raw series (the Open Inference Protocol) are held to the task route's length limit."""
        super().check_inputs(inputs)
        series = inputs[self.config.inputs[0].name]
        most = int(self.config.preprocessing.get("max_length", 48))
        if series.ndim > 1 and series.shape[1] > most:
            raise BadRequest(f"at most {most} observations a series (max_length); got {series.shape[1]}")

    def task_problems(self) -> list[str]:
        prep = self.config.preprocessing
        problems = feature_problems(self, prep.get("features"))
        problems += Guards(self.config.guards).problems(prep.get("features") or [])
        for key in ("ranges", "categories"):
            unknown = sorted(set(prep.get(key, {})) - set(prep.get("features") or []))
            if unknown:
                problems.append(f"[preprocessing] {key} names {unknown[0]!r}, which is not a feature")
        return problems

    def preprocess(self, payload: Payload) -> tuple[dict[str, np.ndarray], Any]:
        prep = self.config.preprocessing
        features = list(prep["features"])
        document = load_json(payload.data)
        series = document.get("observations") if isinstance(document, dict) else None
        if not isinstance(series, list):
            raise UnprocessableInput('body needs "observations": a list of observations, oldest first')
        low, high = int(prep.get("min_length", 1)), int(prep.get("max_length", 48))
        if not low <= len(series) <= high:
            raise UnprocessableInput(f"series has {len(series)} observations; between {low} and {high} are accepted")
        on_oxygen = document.get("on_oxygen", False)
        if not isinstance(on_oxygen, bool):
            raise UnprocessableInput('"on_oxygen" must be true or false')
        wheres = [f"observation {i}: " for i in range(len(series))]
        rows = [self._row(obs, features, where) for obs, where in zip(series, wheres, strict=True)]
        warnings = Guards(self.config.guards).ranges(features, rows, wheres)
        latest = dict(series[-1]) if isinstance(series[-1], dict) else {}
        tensor = np.asarray([rows], dtype=np.float32)  # (1, time, features)
        return {self.config.inputs[0].name: tensor}, (latest, on_oxygen, warnings)

    def _row(self, observation: Any, features: list[str], where: str) -> list[float]:
        """Categorical values (e.g. ACVPU letters) mapped, then every value checked against its range."""
        categories: dict[str, dict[str, float]] = self.config.preprocessing.get("categories", {})
        if isinstance(observation, dict):
            observation = dict(observation)
            for name, mapping in categories.items():
                value = observation.get(name)
                if isinstance(value, str):
                    if value not in mapping:
                        raise UnprocessableInput(f"{where}{name} must be one of {sorted(mapping)} or a number")
                    observation[name] = mapping[value]
        row = feature_row(observation, features, where)
        ranges: dict[str, list[float]] = self.config.preprocessing.get("ranges", {})
        for name, value in zip(features, row, strict=True):
            bounds = ranges.get(name)
            if bounds and not bounds[0] <= value <= bounds[1]:
                raise UnprocessableInput(
                    f"{where}{name} = {value:g} is outside the plausible range {bounds[0]:g} to {bounds[1]:g}"
                    " (check the units)"
                )
        return row

    def postprocess(self, outputs: dict[str, np.ndarray], context: Any, payload: Payload) -> Prediction:
        post = self.config.postprocessing
        risk = float(outputs[post.get("output", self.config.outputs[0].name)].ravel()[0])
        bands = sorted(post.get("bands", [[0.0, "low"], [0.5, "high"]]), key=lambda b: float(b[0]))
        band = str(bands[0][1])  # bands are lower bounds: the last one the risk reaches names it
        for lower, name in bands:
            if risk >= float(lower):
                band = str(name)
        latest, on_oxygen, warnings = context
        details: dict[str, Any] = {"score": risk, "band": band}
        if post.get("news2", False):
            details["news2"] = _news2_of(latest, on_oxygen)
        without, event = (str(name) for name in post.get("labels", ["no event", "event"]))
        return Prediction(band, {event: risk, without: 1.0 - risk}, details=details, warnings=warnings)


def _news2_of(latest: dict[str, Any], on_oxygen: bool) -> dict[str, Any]:
    level = latest.get("consciousness")
    letter = level if isinstance(level, str) else ("A" if level == 0 else "C")
    observation = news2.Observation(
        respiratory_rate=float(latest["respiratory_rate"]),
        spo2=float(latest["spo2"]),
        systolic_bp=float(latest["systolic_bp"]),
        heart_rate=float(latest["heart_rate"]),
        temperature=float(latest["temperature"]),
        consciousness=letter,
        on_oxygen=on_oxygen,
    )
    total, band = news2.assess(observation)
    return {"score": total, "band": band, "rules": "RCP NEWS2 (2017), SpO2 scale 1, latest observation"}
