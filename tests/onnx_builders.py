"""Small ONNX graphs built on the fly with onnx.helper, and model folders around them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def affine_model(scale: float = 2.0, offset: float = 1.0, width: int = 4) -> bytes:
    """y = x * scale + offset, for x of shape [batch, width]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.asarray(scale, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.asarray(offset, dtype=np.float32), "offset"),
    ]
    graph = helper.make_graph(nodes, "affine", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_model_folder(
    root: Path,
    name: str,
    versions: dict[int, bytes],
    *,
    width: int = 4,
    task: str = "tensor",
    extra_toml: str = "",
    sha_override: dict[int, str] | None = None,
) -> Path:
    """`root/name/model.toml` and `root/name/<v>/model.onnx` with correct (or overridden) sha256."""
    folder = root / name
    sha_sections = []
    for version, data in versions.items():
        (folder / str(version)).mkdir(parents=True, exist_ok=True)
        (folder / str(version) / "model.onnx").write_bytes(data)
        digest = (sha_override or {}).get(version) or hashlib.sha256(data).hexdigest()
        sha_sections.append(f'[versions.{version}.sha256]\n"model.onnx" = "{digest}"\n')
    (folder / "model.toml").write_text(
        f'''name = "{name}"
task = "{task}"
max_batch_size = 8

[[inputs]]
name = "x"
datatype = "FP32"
shape = [-1, {width}]

[[outputs]]
name = "y"
datatype = "FP32"
shape = [-1, {width}]

{extra_toml}
{"".join(sha_sections)}
''',
        "utf-8",
    )
    return folder


def write_function(functions: Path, name: str, model: str, extra: str = "") -> Path:
    folder = functions / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "function.toml").write_text(f'name = "{name}"\nmodel = "{model}"\n{extra}\n', "utf-8")
    (folder / "handler.py").write_text(
        "from medfn.lambda_handler import make_handler\n\nhandler = make_handler(__file__)\n", "utf-8"
    )
    return folder


def linear_softmax_model(weights: np.ndarray, bias: np.ndarray) -> bytes:
    """probabilities = softmax(features @ weights + bias): a logistic model in plain ONNX."""
    n_features, n_classes = weights.shape
    features = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n_features])
    probabilities = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_classes])
    nodes = [
        helper.make_node("MatMul", ["features", "weights"], ["logits_no_bias"]),
        helper.make_node("Add", ["logits_no_bias", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    inits = [
        numpy_helper.from_array(weights.astype(np.float32), "weights"),
        numpy_helper.from_array(bias.astype(np.float32), "bias"),
    ]
    graph = helper.make_graph(nodes, "linear_softmax", [features], [probabilities], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
