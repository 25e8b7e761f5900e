"""Time-series risk: a series of observations -> a risk score and band from the model.

With `[postprocessing] news2 = true`, the NEWS2 score of the latest observation, computed by
the published rules (medfn.tasks.news2), comes back beside the model's output, so a clinician can
compare the learned risk with the early-warning score they already use.

`explain` weighs the series by baseline replacement, as changes of the risk (positive: the part
raised it). A feature's weight is what replacing it by its `[explain] baseline` (the training
median) at every step takes off the risk. A step's weight comes from replacing the latest hours
back to it: the variant with steps s.. replaced, against the one with steps s+1.. replaced, for
all features together and for each alone. Not one step at a time: three hours of low SpO2 each
hide the others (the reference model's risk moved < 0.001 when any one of them was made typical,
0.95 when all three were), while restored from the latest back the weights add up to what the
last hours carry and the risk's onset shows. All variants run as one batch: 1 + T x (F + 1) for
T observations of F features (337 for 48 of 6). What it shows is this model's response to parts
made typical; which hours of a run get the credit follows from walking back from the latest.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medfn.errors import BadRequest, UnprocessableInput
from medfn.serving.model import Explanation, Model, Payload, Prediction
from medfn.tasks import news2
from medfn.tasks.guards import Guards
from medfn.tasks.options import explain_problems
from medfn.tasks.records import (
    baseline_problems,
    explain_batch_problems,
    feature_problems,
    feature_row,
    first_row,
    load_json,
    run_variants,
    weight,
)


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
        problems += explain_problems(self.config.task, self.config.explain) or explain_batch_problems(self)
        problems += baseline_problems(self, prep["features"]) if isinstance(prep.get("features"), list) else []
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

    def explain(self, payload: Payload) -> Explanation:
        """The prediction, and weights as changes of the risk: `features` (each replaced at every
        step: `{"name", "weight", "value"` (the latest), `"baseline"}`, largest first) and `steps`
        (oldest first: `{"step", "weight", "features": {name: weight}}`, restored from the latest
        back, so the weights of the steps from s on sum to what the last hours from s carry)."""
        baseline = self.config.explain.get("baseline")
        if baseline is None:
            return super().explain(payload)  # no baseline in model.toml: this model cannot explain
        inputs, context = self.prepare(payload)
        series = inputs[self.config.inputs[0].name]  # (1, time, features)
        steps, width = series.shape[1], series.shape[2]
        base = np.asarray(baseline, dtype=np.float32)
        # replaced[s, t]: step t is replaced in the variants that replace the steps from s on
        replaced = np.arange(steps)[None, :] >= np.arange(steps)[:, None]
        whole = np.where(replaced[:, :, None], base, series)  # (s, time, features): every feature
        one = np.repeat(series, width * steps, axis=0).reshape(width, steps, steps, width)
        for f in range(width):  # one feature, the others as observed
            one[f, :, :, f] = np.where(replaced, base[f], series[0, :, f])
        variants = np.concatenate([series, whole, one.reshape(width * steps, steps, width)])
        outputs, inference_ms, runs = run_variants(self, variants)
        prediction = self.finish(first_row(outputs), context, payload, inference_ms)
        risk = outputs[self.config.postprocessing.get("output", self.config.outputs[0].name)]
        risk = risk.reshape(len(risk), -1)[:, 0].astype(np.float64)
        # Risk with the steps from s on replaced, s = 0..steps (s = steps: nothing replaced).
        from_whole = np.append(risk[1 : 1 + steps], risk[0])
        from_one = np.concatenate([risk[1 + steps :].reshape(width, steps), np.full((width, 1), risk[0])], axis=1)
        by_step, by_cell = np.diff(from_whole), np.diff(from_one, axis=1)  # (steps,), (features, steps)
        names = list(self.config.preprocessing["features"])
        features = [
            {"name": name, "weight": weight(risk[0] - r), "value": float(str(v)), "baseline": float(b)}
            for name, r, v, b in zip(names, from_one[:, 0], series[0, -1], baseline, strict=True)
        ]
        features.sort(key=lambda f: -abs(float(f["weight"])))
        observations = [
            {
                "step": t,
                "weight": weight(by_step[t]),
                "features": {name: weight(w) for name, w in zip(names, by_cell[:, t], strict=True)},
            }
            for t in range(steps)
        ]
        event = str(self.config.postprocessing.get("labels", ["no event", "event"])[1])  # the risk is its probability
        details = {"target": event, "features": features, "steps": observations, "variants": len(risk) - 1}
        return Explanation(prediction, "baseline-replacement", details | {"runs": runs})


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
