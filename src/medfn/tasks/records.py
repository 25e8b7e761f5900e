"""Reading JSON records for tabular and time-series tasks, with 422s that name the field, and
explaining their answers by replacement.

orjson is strict JSON; Python clients send NaN and Infinity by default, so when orjson
refuses a body we read it once more with the standard parser to name the offending field
rather than answer "not JSON".

An explanation by replacement runs the input and its variants (one feature, word or time
step replaced by a neutral value each) as one batch, `[explain] batch` rows a run (default
`max_batch_size`), and weighs each part by how much its replacement lowers the answer's
score: positive, the part spoke for the answer; negative, against it.
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from medfn.errors import UnprocessableInput
from medfn.tasks.labels import activated

if TYPE_CHECKING:
    from medfn.serving.model import Model


_FP32_MAX = float(np.finfo(np.float32).max)


def load_json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise UnprocessableInput("body is not valid JSON") from exc


def number(value: Any, field: str) -> float:
    """A finite number; booleans and numeric strings are refused (no silent coercion)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UnprocessableInput(f"{field} must be a number")
    try:
        result = float(value)
    except OverflowError as exc:
        raise UnprocessableInput(f"{field} is too large") from exc
    if not math.isfinite(result):
        raise UnprocessableInput(f"{field} must be finite (got NaN or infinity)")
    if abs(result) > _FP32_MAX:  # the features go to the model as FP32, where this is infinity
        raise UnprocessableInput(f"{field} = {result:g} does not fit the model's FP32 input")
    return result


def feature_row(record: Any, features: list[str], where: str = "") -> list[float]:
    """The record's values in `features` order; every feature present, no unknown ones."""
    if not isinstance(record, dict):
        raise UnprocessableInput(f"{where or 'body'} must be an object of named features")
    missing = [name for name in features if name not in record]
    if missing:
        raise UnprocessableInput(
            f"{where}missing feature {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    unknown = sorted(set(record) - set(features))
    if unknown:
        raise UnprocessableInput(f"{where}unknown feature {unknown[0]!r}")
    return [number(record[name], f"{where}feature {name!r}") for name in features]


def feature_problems(model: Model, features: Any) -> list[str]:
    """`[preprocessing] features` against the input's last axis: one name per column."""
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        return ["[preprocessing] features must list the input's columns by name, in order"]
    if len(set(features)) != len(features):
        return ["[preprocessing] features names a column twice"]
    spec = model.config.inputs[0]
    columns = model.known_dim(spec, -1)
    if columns is not None and columns != len(features):
        return [f"[preprocessing] names {len(features)} features; input {spec.name!r} has {columns} columns"]
    return []


def baseline_problems(model: Model, features: list[str]) -> list[str]:
    """`[explain] baseline`, where given: one finite number per feature, in `features` order."""
    baseline = model.config.explain.get("baseline")
    if baseline is None:
        return []
    if not isinstance(baseline, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in baseline
    ):
        return ["[explain] baseline must list one finite number per feature"]
    if len(baseline) != len(features):
        return [f"[explain] baseline has {len(baseline)} values; [preprocessing] names {len(features)} features"]
    return []


def explain_batch_problems(model: Model) -> list[str]:
    batch = model.config.explain.get("batch", 0)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        return ["[explain] batch must be a whole number of rows, 0 or more"]
    return []


def run_variants(model: Model, variants: np.ndarray) -> tuple[dict[str, np.ndarray], float, int]:
    """The outputs of every row of `variants` (the input first), in runs of `[explain] batch`
    rows (default `max_batch_size`, else all at once); the milliseconds the runs took; how many."""
    per_run = int(model.config.explain.get("batch", 0)) or model.config.max_batch_size or len(variants)
    names = [spec.name for spec in model.config.answered_outputs]
    started = time.perf_counter()
    runs = [
        model.refuse_non_finite(model.execute({model.config.inputs[0].name: variants[i : i + per_run]}, names))
        for i in range(0, len(variants), per_run)
    ]
    outputs = {name: np.concatenate([run[name] for run in runs]) for name in names}
    return outputs, (time.perf_counter() - started) * 1000.0, len(runs)


def first_row(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The input's own outputs, as a plain prediction would have them."""
    return {name: array[:1] for name, array in outputs.items()}


def class_drops(scores: np.ndarray, post: dict[str, Any]) -> tuple[str, np.ndarray]:
    """The answered class (row 0's likeliest; a multi-label row's likeliest label even when none is
    present), and by how much each later row lowers its probability.

    Where the probabilities sum to 1, the drop is read as the rise of the other classes' sum: the
    same number, but a confident answer's 0.99999994 and 1.0 are neighbours in FP32, while the
    rest (6e-8 and 1e-9) keeps its digits, so a saturated answer still ranks what moved it."""
    label, by_label = activated(scores[0], post)
    target = label if label in by_label else next(iter(by_label))
    rows = [activated(row, post)[1] for row in scores]
    if post.get("multi_label", False):
        probability = np.asarray([row[target] for row in rows], dtype=np.float64)
        return target, probability[0] - probability[1:]
    rest = np.asarray([sum(float(p) for name, p in row.items() if name != target) for row in rows])
    return target, rest[1:] - rest[0]


def weight(value: float) -> float:
    """A weight for the answer: 6 significant digits (a saturated answer's are small, not zero), no -0."""
    return float(f"{value:.6g}") + 0.0
