"""medfn.inference_protocol.tensor_json: OIP JSON read by simdjson gives what orjson + np.asarray gave, faster."""

from __future__ import annotations

import itertools

import numpy as np
import orjson
import pytest

from medfn.config import DATATYPES
from medfn.errors import BadRequest
from medfn.inference_protocol.codec import _json_tensor_data, parse_request
from medfn.inference_protocol.tensor_json import _parse, load_document

DATA = [
    "[1, 2, 3]", "[1.5, -2.25, 0.1]", "[[1, 2], [3, 4]]", "[true, false]", "[0, 1]", "[300]", "[-1]",
    "[9223372036854775807]", "[9223372036854775808]", "[18446744073709551615]", "[1e300]", "[1, 2.5]",
    "[1, null]", '[1, "2"]', "[]", "[65504, 65520]", "[3.4028235e38, 1e39]", "[-0.0, 5e-324]",
    "[0.5, true]", "[[0.5, 1], [2, 3]]", "[-1.5, 300]", '[0.5, "x"]',
]  # fmt: skip


def reference(text: str, dtype: np.dtype) -> np.ndarray | type[Exception]:
    """What the codec did before simdjson: orjson's lists through np.asarray."""
    try:
        with np.errstate(over="ignore"):
            return np.asarray(orjson.loads(text), dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        return Exception


@pytest.mark.parametrize(("text", "datatype"), list(itertools.product(DATA, sorted(DATATYPES))))
def test_tensor_data_decodes_as_numpy_asarray_of_the_json_list_did(text: str, datatype: str) -> None:
    dtype = np.dtype(DATATYPES[datatype])
    expected = reference(text, dtype)
    data = load_document(f'{{"inputs": [{{"data": {text}}}]}}'.encode())["inputs"][0]["data"]
    if expected is Exception:
        with pytest.raises((TypeError, ValueError, OverflowError)):
            _json_tensor_data(data, dtype)
        return
    with np.errstate(over="ignore", invalid="ignore"):
        got = _json_tensor_data(data, dtype)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.ravel(), np.asarray(expected).ravel())


def test_numbers_arrive_as_one_array_and_the_rest_as_python() -> None:
    document = load_document(b'{"id": "a", "inputs": [{"name": "x", "shape": [2], "data": [0.5, 2],'
                             b' "parameters": {"p": [1, {"q": true}]}}], "outputs": [{"name": "y"}]}')  # fmt: skip
    tensor = document["inputs"][0]
    assert isinstance(tensor["data"], np.ndarray) and tensor["data"].dtype == np.float64
    assert tensor["shape"] == [2] and tensor["parameters"] == {"p": [1, {"q": True}]}
    assert document["id"] == "a" and document["outputs"] == [{"name": "y"}]


@pytest.mark.parametrize(
    "body", [b"[" * 5000 + b"]" * 5000, b'{"inputs": "\xff"}', b"NaN", b'{"inputs": [1e999]}', b"", b'{"a": 1} x']
)
def test_what_is_not_json_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_request(body, None)


def test_a_parser_still_held_by_an_earlier_document_is_replaced() -> None:
    held = _parse(b'{"inputs": [1, 2]}')  # a live proxy pins the thread's parser
    document = load_document(b'{"inputs": [{"data": [1, 2]}]}')
    assert document["inputs"][0]["data"].tolist() == [1, 2]
    assert held["inputs"].as_list() == [1, 2]
