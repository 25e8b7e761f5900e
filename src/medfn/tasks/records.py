"""Reading JSON records for tabular and time-series tasks, with 422s that name the field.

orjson is strict JSON; Python clients send NaN and Infinity by default, so when orjson
refuses a body we read it once more with the standard parser to name the offending field
rather than answer "not JSON".
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from medfn.errors import UnprocessableInput

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
