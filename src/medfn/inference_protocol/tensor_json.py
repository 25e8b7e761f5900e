"""Reading an inference request's JSON, with each tensor's numbers going straight into numpy.

A ResNet-18-sized input is 150,528 numbers. orjson makes a Python float of each and numpy
then copies them out again. simdjson parses the document once and hands over an input's
`data` as one buffer of int64, uint64 or float64 values, without a Python object per number,
which takes most of that time away (benchmarks/README.md has the figures). Everything else in
the document becomes ordinary Python objects.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

import numpy as np
import simdjson

from medfn.errors import BadRequest

# simdjson reads a flat or nested array of numbers into one buffer when every number fits the
# type asked for: whole numbers as int64 (or uint64 past int64's range), any numbers as float64.
_BUFFER_TYPES: tuple[tuple[Literal["i", "u", "d"], type[np.number[Any]]], ...] = (
    ("i", np.int64),
    ("u", np.uint64),
    ("d", np.float64),
)
_FLOAT_FIRST: tuple[tuple[Literal["i", "u", "d"], type[np.number[Any]]], ...] = (("d", np.float64),)
_local = threading.local()


def load_document(head: bytes) -> Any:
    """The JSON as Python objects, except that each `inputs[*].data` array of numbers is a
    numpy array (int64, uint64 or float64); any other `data` stays a list."""
    try:
        document = _parse(head)
    except (ValueError, RuntimeError) as exc:  # simdjson: bad JSON, bad UTF-8, too deep
        raise BadRequest("inference request is not valid JSON") from exc
    if not isinstance(document, simdjson.Object):
        return _plain(document)
    plain = {}
    for key in _keys(document):
        value = document[key]
        if key == "inputs" and isinstance(value, simdjson.Array):
            plain[key] = [_input(item) for item in value]
        else:
            plain[key] = _plain(value)
    return plain


def _parse(head: bytes) -> Any:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    try:
        return parser.parse(head)
    except RuntimeError:
        # A document too deep, or this thread's parser still held by proxies of an earlier
        # document (an exception's traceback can keep them alive); a new parser tells which.
        parser = _local.parser = simdjson.Parser()
        return parser.parse(head)


def _input(item: Any) -> Any:
    if not isinstance(item, simdjson.Object):
        return _plain(item)
    return {key: _numbers(item[key]) if key == "data" else _plain(item[key]) for key in _keys(item)}


def _keys(obj: Any) -> list[str]:
    """An object's keys; simdjson cannot look up a key holding a NUL, so such a key is refused."""
    keys: list[str] = list(obj.keys())
    if any("\x00" in key for key in keys):
        raise BadRequest("inference request has a JSON key with a NUL character")
    return keys


def _numbers(value: Any) -> Any:
    if isinstance(value, simdjson.Array):
        # An array whose first number has a fraction or exponent is float64 for numpy too (one
        # float makes the whole list float): ask for that first. Each refused type raises, and
        # two refusals cost ~8 us, more than a small model's whole inference.
        types = _FLOAT_FIRST if isinstance(_first_scalar(value), float) else _BUFFER_TYPES
        for of_type, dtype in types:
            try:
                return np.frombuffer(value.as_buffer(of_type=of_type), dtype=dtype)
            except (TypeError, ValueError):  # another type, or out of this type's range
                continue
    return _plain(value)


def _first_scalar(value: Any) -> Any:
    while isinstance(value, simdjson.Array) and len(value):
        value = value[0]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value
