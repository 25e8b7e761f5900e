"""model.toml held against the ONNX graph it describes, at load: a mismatch is a reason, not a 500.

Each check returns what it finds wrong, in words a model author can act on; the model is served
only when nothing is found (`Model.load`), and `medfn check` prints the same list before deploy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from medfn.config import ModelConfig, TensorSpec

# ONNX Runtime's element type names -> Open Inference Protocol datatypes.
_ORT_DATATYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
}


class GraphTensor(Protocol):
    """What ONNX Runtime says of a graph input or output (its NodeArg)."""

    name: str
    type: str
    shape: Sequence[Any]  # an int for a fixed dim; a name or None for a free one


def fixed_dims(tensor: GraphTensor) -> list[int | None]:
    """The graph's dims: a number where it fixes one, None where any size goes."""
    return [dim if isinstance(dim, int) and dim >= 0 else None for dim in tensor.shape]


def graph_problems(config: ModelConfig, inputs: Sequence[GraphTensor], outputs: Sequence[GraphTensor]) -> list[str]:
    """Names, datatypes, ranks and fixed dims of every tensor model.toml declares."""
    problems = _side("input", config.inputs, {t.name: t for t in inputs})
    problems += _side("output", config.outputs, {t.name: t for t in outputs})
    declared = {spec.name for spec in config.inputs}
    problems += [f"graph input {t.name!r} is not declared in model.toml" for t in inputs if t.name not in declared]
    return problems


def _side(kind: str, specs: Sequence[TensorSpec], graph: dict[str, GraphTensor]) -> list[str]:
    problems = []
    for spec in specs:
        tensor = graph.get(spec.name)
        if tensor is None:
            problems.append(f"{kind} {spec.name!r} is not in the graph; its {kind}s: {sorted(graph)}")
            continue
        if tensor.type.startswith("seq(map("):  # scikit-learn's ZipMap: rows of {class: p}, read as [N, classes]
            if spec.datatype != "FP32" or len(spec.shape) != 2:
                problems.append(f"{kind} {spec.name!r} is a sequence of maps (ZipMap): declare it FP32, [-1, classes]")
            continue
        datatype = _ORT_DATATYPES.get(tensor.type, tensor.type)
        if datatype != spec.datatype:
            problems.append(f"{kind} {spec.name!r} is {datatype} in the graph, {spec.datatype} in model.toml")
        dims = fixed_dims(tensor)
        if len(dims) != len(spec.shape):
            problems.append(f"{kind} {spec.name!r} has rank {len(dims)} in the graph, {len(spec.shape)} in model.toml")
            continue
        for axis, (fixed, declared) in enumerate(zip(dims, spec.shape, strict=True)):
            if fixed is not None and declared != fixed:
                problems.append(f"{kind} {spec.name!r} dim {axis} is {fixed} in the graph, {declared} in model.toml")
    return problems
