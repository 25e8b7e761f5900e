"""A ResNet-18-shaped ONNX classifier with random weights, for throughput benchmarks only.

    .venv/bin/python -m model_store.build.resnet18_bench /tmp/resnet18.onnx

The torchvision ResNet-18 topology written out with onnx.helper (no torch, no torchvision):
a 7x7/2 stem, a 3x3/2 max pool, four stages of two basic blocks (64, 128, 256, 512 channels;
stages 2-4 open with a stride-2 block and a 1x1/2 projection shortcut), global average pool,
a 1000-way linear layer and a softmax. Batch norms are folded into the convolutions, as
ONNX Runtime's optimizer does to an exported model anyway: the same convolutions, the same
FLOPs (1.8 GFLOPs an image), 11.7 M parameters.

The weights are random (He-scaled, seeded): the answers mean nothing, the cost is real.
Input `image` [batch, 3, 224, 224] FP32; output `probabilities` [batch, 1000] FP32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride of the stage's first block)
CLASSES = 1000


class _Graph:
    """Nodes and weights accumulated in order; names are made unique by a counter."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def weight(self, array: np.ndarray, kind: str) -> str:
        name = self.name(kind)
        self.weights.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv(self, x: str, cin: int, cout: int, kernel: int, stride: int, gain: float = 1.0) -> str:
        fan_in = cin * kernel * kernel
        w = self.rng.standard_normal((cout, cin, kernel, kernel)) * np.sqrt(2.0 / fan_in) * gain
        b = self.rng.standard_normal(cout) * 0.01  # a folded batch norm leaves a bias
        out = self.name("conv")
        pad = kernel // 2
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self.weight(w, "w"), self.weight(b, "b")],
                [out],
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[pad] * 4,
            )
        )
        return out

    def op(self, kind: str, inputs: list[str], **attributes: object) -> str:
        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], **attributes))
        return out


def _basic_block(g: _Graph, x: str, cin: int, cout: int, stride: int) -> str:
    y = g.op("Relu", [g.conv(x, cin, cout, 3, stride)])
    y = g.conv(y, cout, cout, 3, 1, gain=0.5)  # a damped residual branch keeps random activations finite in fp16
    shortcut = x if stride == 1 and cin == cout else g.conv(x, cin, cout, 1, stride)
    return g.op("Relu", [g.op("Add", [y, shortcut])])


def build(seed: int = 0) -> onnx.ModelProto:
    g = _Graph(seed)
    x = g.op("Relu", [g.conv("image", 3, 64, 7, 2)])
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for channels, stride in STAGES:
        x = _basic_block(g, x, cin, channels, stride)
        x = _basic_block(g, x, channels, channels, 1)
        cin = channels
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    fc_w = g.weight(g.rng.standard_normal((CLASSES, 512)) * np.sqrt(1.0 / 512), "fc_w")
    fc_b = g.weight(np.zeros(CLASSES), "fc_b")
    logits = g.op("Gemm", [x, fc_w, fc_b], transB=1)
    g.nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1))
    graph = helper.make_graph(
        g.nodes,
        "resnet18_random",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=g.weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="medfn-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build(seed), str(path))
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = build(args.seed)
    onnx.save(model, str(args.out))
    parameters = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    print(f"wrote {args.out}: {len(model.graph.node)} nodes, {parameters / 1e6:.1f} M parameters (random weights)")
