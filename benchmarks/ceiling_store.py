"""A near-zero-cost model and the bodies sent to it: what the serving ceiling and the request
breakdown measure the serving path with, so that the model's own run is not what is timed.

The model takes the segmenter's input, `image` [batch, 1, 128, 128] FP32 (64 KB an image), and
answers `probabilities` [batch, 2]: the softmax of (mean, -mean) of each image, a few
microseconds a run. As an `image_classification` model it also serves the task route (a PNG
in, decoded and resized by medfn as any radiograph is), with `[dynamic_batching]` on.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

NAME = "ceiling"
SHAPE = (1, 128, 128)  # one image, no batch axis: scan_segmenter's input
INPUT, OUTPUT = "image", "probabilities"


def onnx_model() -> bytes:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", *SHAPE])
    y = helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", 2])
    nodes = [
        helper.make_node("ReduceMean", [INPUT], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["mean", "one"], ["column"]),
        helper.make_node("Neg", ["column"], ["negated"]),
        helper.make_node("Concat", ["column", "negated"], ["logits"], axis=1),
        helper.make_node("Softmax", ["logits"], [OUTPUT], axis=1),
    ]
    one = helper.make_tensor("one", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(nodes, NAME, [x], [y], initializer=[one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_store(root: Path, batch: int = 32, delay_ms: float = 2.0, batching: bool = True) -> Path:
    """root/model_store/ceiling and root/functions/ceiling (an HTTP function); returns root."""
    folder = root / "model_store" / NAME
    (folder / "1").mkdir(parents=True, exist_ok=True)
    data = onnx_model()
    (folder / "1" / "model.onnx").write_bytes(data)
    block = f"\n[dynamic_batching]\nmax_queue_delay_ms = {delay_ms}\n" if batching else ""
    (folder / "model.toml").write_text(
        f'name = "{NAME}"\ntask = "image_classification"\nmax_batch_size = {batch}\n{block}\n'
        f'[[inputs]]\nname = "{INPUT}"\ndatatype = "FP32"\nshape = {[-1, *SHAPE]}\n\n'
        f'[[outputs]]\nname = "{OUTPUT}"\ndatatype = "FP32"\nshape = [-1, 2]\n\n'
        '[preprocessing]\ncolor = "L"\nsize = [128, 128]\nmean = [0.0]\nstd = [1.0]\n\n'
        '[postprocessing]\nlabels = ["low", "high"]\n\n'
        f'[versions.1.sha256]\n"model.onnx" = "{hashlib.sha256(data).hexdigest()}"\n',
        "utf-8",
    )
    function = root / "functions" / NAME
    function.mkdir(parents=True, exist_ok=True)
    (function / "function.toml").write_text(f'name = "{NAME}"\nmodel = "{NAME}"\n', "utf-8")
    return root


def image(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((1, *SHAPE), dtype=np.float32)


def binary_body(seed: int = 1) -> tuple[bytes, dict[str, str]]:
    """One image with the binary tensor extension, the answer asked for as binary too."""
    raw = image(seed).tobytes()
    head = json.dumps(
        {
            "inputs": [
                {"name": INPUT, "datatype": "FP32", "shape": [1, *SHAPE], "parameters": {"binary_data_size": len(raw)}}
            ],
            "outputs": [{"name": OUTPUT, "parameters": {"binary_data": True}}],
        }
    ).encode()
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))}
    return head + raw, headers


def json_body(seed: int = 1) -> tuple[bytes, dict[str, str]]:
    """The same image as OIP JSON: 16,384 numbers written out."""
    data = [round(float(v), 6) for v in image(seed).ravel()]
    body = json.dumps({"inputs": [{"name": INPUT, "datatype": "FP32", "shape": [1, *SHAPE], "data": data}]})
    return body.encode(), {"content-type": "application/json"}


def png_body(seed: int = 1) -> tuple[bytes, dict[str, str]]:
    """A 128x128 8-bit grey PNG for the task route: decoded by Pillow, no resize needed."""
    from PIL import Image

    pixels = (image(seed)[0, 0] * 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue(), {"content-type": "image/png"}


BODIES = {"binary": binary_body, "json": json_body, "png": png_body}


def route(kind: str) -> str:
    """Where a body of `kind` goes: the OIP infer route, or the task route for an image."""
    return f"/v1/models/{NAME}/predict" if kind == "png" else f"/v2/models/{NAME}/infer"
