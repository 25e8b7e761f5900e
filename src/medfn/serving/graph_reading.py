"""What a graph says about itself, read with onnxruntime and, when installed, onnx.

ONNX Runtime gives the inputs and outputs (names, element types, dims, fixed or free); the `onnx`
package (the dev extra; never a Lambda bundle), where it is installed, gives the graph itself:
which node makes each output (a Softmax, a Sigmoid, a scikit-learn ZipMap). Both load lazily.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# Nodes that pass their input's values through: the node behind them says what the output holds.
_PASS_THROUGH = {"Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Cast", "Transpose"}


@dataclass(frozen=True)
class Tensor:
    """A graph input or output as ONNX Runtime describes it."""

    name: str
    type: str  # e.g. "tensor(float)", or "seq(map(int64,tensor(float)))" for a ZipMap
    dims: tuple[int | str | None, ...]  # an int where fixed; a name or None where free

    @property
    def datatype(self) -> str | None:
        """The Open Inference Protocol datatype (FP32...), None for a non-tensor or a string."""
        from medfn.config import DATATYPES

        match = re.fullmatch(r"tensor\((\w+)\)", self.type)
        if match is None:
            return None
        numpy_name = {"float": "float32", "double": "float64"}.get(match[1], match[1])
        return next((oip for oip, name in DATATYPES.items() if name == numpy_name), None)

    @property
    def shape(self) -> list[int]:
        return [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in self.dims]

    def fixed(self, axis: int) -> int | None:
        dim = self.dims[axis]
        return dim if isinstance(dim, int) and dim >= 0 else None

    def dims_text(self) -> str:
        return "[" + ", ".join(str(d) if isinstance(d, int | str) else "?" for d in self.dims) + "]"


@dataclass
class Graph:
    inputs: list[Tensor]
    outputs: list[Tensor]
    read: bool = False  # the onnx package read the graph itself
    last_ops: dict[str, str] = field(default_factory=dict)  # output -> op making it (past pass-throughs)
    classifier_ops: set[str] = field(default_factory=set)  # outputs made by ai.onnx.ml classifiers


def inspect(path: Path) -> Graph:
    """The graph's tensors from ONNX Runtime; its last nodes from onnx, where that is installed."""
    import onnxruntime as ort

    from medfn.errors import BadRequest

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime raises its own classes, and RuntimeError for protobuf
        # never the runtime's text: ours says what to do
        raise BadRequest(f"{path} is not an ONNX model that ONNX Runtime can load") from exc
    graph = Graph(
        inputs=[Tensor(t.name, t.type, tuple(t.shape)) for t in session.get_inputs()],
        outputs=[Tensor(t.name, t.type, tuple(t.shape)) for t in session.get_outputs()],
    )
    _read_nodes(path, graph)
    return graph


def _read_nodes(path: Path, graph: Graph) -> None:
    try:
        import onnx
    except ImportError:
        return
    from medfn.errors import BadRequest

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # a graph ONNX Runtime loads but onnx cannot parse: fewer guesses, marked as such
        return
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise BadRequest(
            f"{path} keeps its weights in external data files; save it as one file "
            "(onnx.save(model, path, save_as_external_data=False)) and import that"
        )
    producers = {out: node for node in proto.graph.node for out in node.output}
    for output in graph.outputs:
        node = producers.get(output.name)
        for _ in range(len(proto.graph.node)):
            if node is None or node.op_type not in _PASS_THROUGH or not node.input:
                break
            node = producers.get(node.input[0])
        if node is not None:
            graph.last_ops[output.name] = node.op_type
            if node.domain == "ai.onnx.ml" and node.op_type.endswith("Classifier"):
                graph.classifier_ops.add(output.name)
    graph.read = True
