"""The Open Inference Protocol (KServe v2 / Triton REST) request and response codec.

Transport-free: it turns a body (JSON, or JSON followed by binary tensors as Triton's
binary tensor data extension lays them out) into numpy arrays, and outputs back into a
body. Tensors are decoded straight into numpy (medfn.inference_protocol.tensor_json, simdjson): on a
ResNet-18-sized input, `json.loads` alone costs more than the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from medfn.config import DATATYPES
from medfn.errors import BadRequest

_NUMPY_TO_OIP = {np.dtype(v): k for k, v in DATATYPES.items()}


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    # output name -> as binary?; empty: every output, in the model's order
    outputs: dict[str, bool] = field(default_factory=dict)
    binary_output_default: bool = False


def parse_request(body: bytes, header_length: int | None) -> InferRequest:
    """`header_length` is the `Inference-Header-Content-Length` header, when sent."""
    if header_length is not None and not 0 <= header_length <= len(body):
        raise BadRequest("Inference-Header-Content-Length is larger than the body")
    head = body if header_length is None else body[:header_length]
    binary = memoryview(body)[len(head) :]
    # simdjson loads with the first request, not in every Lambda's init (~2.5 ms, and a
    # function may only ever be called on its task route)
    from medfn.inference_protocol.tensor_json import load_document

    document = load_document(head)
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list) or not document["inputs"]:
        raise BadRequest('inference request needs "inputs": a non-empty list of tensors')

    offset = 0
    inputs: dict[str, np.ndarray] = {}
    for raw in document["inputs"]:
        name, array, used = _parse_input(raw, binary[offset:])
        if name in inputs:
            raise BadRequest(f"input {name!r} is given twice")
        inputs[name] = array
        offset += used
    if offset != len(binary):
        raise BadRequest(f"body has {len(binary) - offset} bytes of binary data that no input claims")

    parameters = _parameters(document)
    outputs: dict[str, bool] = {}
    for raw in document.get("outputs") or []:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise BadRequest('each requested output needs a "name"')
        binary_flag = _parameters(raw).get("binary_data")
        outputs[raw["name"]] = (
            bool(binary_flag) if binary_flag is not None else bool(parameters.get("binary_data_output", False))
        )
    request_id = document.get("id")
    return InferRequest(
        id=str(request_id) if request_id is not None else None,
        inputs=inputs,
        outputs=outputs,
        binary_output_default=bool(parameters.get("binary_data_output", False)),
    )


def _parameters(obj: dict[str, Any]) -> dict[str, Any]:
    parameters = obj.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest('"parameters" must be an object')
    return parameters


def _parse_input(raw: Any, binary: memoryview) -> tuple[str, np.ndarray, int]:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise BadRequest('each input needs a "name"')
    name = raw["name"]
    datatype = raw.get("datatype")
    if datatype not in DATATYPES:
        raise BadRequest(f"input {name!r}: datatype {datatype!r} is not supported; supported: {sorted(DATATYPES)}")
    shape = raw.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise BadRequest(f"input {name!r}: shape must be a list of non-negative integers")
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    count = math.prod(shape)
    size = _parameters(raw).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != count * dtype.itemsize or size > len(binary):
            raise BadRequest(f"input {name!r}: binary_data_size does not match its shape, datatype or the body")
        array = _reshaped(np.frombuffer(binary[:size], dtype=dtype), shape, name)
        return name, array.astype(dtype.newbyteorder("="), copy=False), size
    if "data" not in raw:
        raise BadRequest(f'input {name!r} has neither "data" nor binary_data_size')
    try:
        array = _json_tensor_data(raw["data"], dtype.newbyteorder("="))
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadRequest(f"input {name!r}: data is not a list of {datatype} values") from exc
    if array.size != count:
        raise BadRequest(f"input {name!r}: data has {array.size} elements, shape {shape} needs {count}")
    return name, _reshaped(array, shape, name), 0


def _json_tensor_data(data: Any, dtype: np.dtype) -> np.ndarray:
    """`data` as medfn.inference_protocol.tensor_json left it: a numpy array of the numbers, or a list (booleans,
    mixed values). Either way the result is what np.asarray(the JSON list, dtype) gives."""
    if isinstance(data, np.ndarray):
        if dtype.kind in "iu":
            if data.dtype.kind == "f":  # fractions to an integer type: numpy's own rules
                return np.asarray(data.tolist(), dtype=dtype)
            info = np.iinfo(dtype)  # astype would wrap where np.asarray raises
            if data.size and (data.min() < info.min or data.max() > info.max):
                raise OverflowError(f"values out of {dtype} range")
        with np.errstate(over="ignore"):  # past FP32's range is infinity, refused with the input's name
            return data.astype(dtype)
    if isinstance(data, list):
        try:
            return np.fromiter(data, dtype=dtype, count=len(data))
        except (TypeError, ValueError, OverflowError):
            pass
    return np.asarray(data, dtype=dtype)


def _reshaped(array: np.ndarray, shape: list[int], name: str) -> np.ndarray:
    # With a zero among the dimensions the element count matches whatever the others are,
    # and numpy refuses dimensions past its index range with ValueError.
    try:
        return array.reshape(shape)
    except ValueError as exc:
        raise BadRequest(f"input {name!r}: shape {shape} is too large for an array") from exc


def encode_response(
    *, model_name: str, model_version: str, request: InferRequest, outputs: dict[str, np.ndarray]
) -> tuple[bytes, int | None]:
    """The body, and the JSON header's length when binary tensors follow it."""
    tensors: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in outputs.items():
        datatype = _NUMPY_TO_OIP.get(array.dtype)
        if datatype is None:
            raise BadRequest(f"output {name!r} has a datatype the protocol cannot carry")
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if request.outputs.get(name, request.binary_output_default):
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = np.ascontiguousarray(array).ravel()
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": tensors}
    if request.id is not None:
        response["id"] = request.id
    head = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return head, None
    return head + b"".join(chunks), len(head)
