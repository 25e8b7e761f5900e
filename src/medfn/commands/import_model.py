"""`medfn import MODEL.onnx --name NAME --task TASK`: a model folder and a function, from a graph.

Reads the graph's inputs and outputs with ONNX Runtime and, where the `onnx` package is installed
(the dev extra; never a Lambda bundle), the graph itself: which node makes each output (a Softmax,
a Sigmoid, a scikit-learn ZipMap). From them it writes `<store>/<NAME>/model.toml`, copies the
graph to `<store>/<NAME>/<version>/model.onnx` with its sha256, and writes
`<functions>/<NAME>/function.toml` and `handler.py`. Every value it had to guess carries a
`# REVIEW: ...` comment on the line above, saying what was guessed from what; the command prints
the same list, then the next step, `medfn check NAME`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAME = "import"  # the command's name; the module cannot be called import, a Python keyword
HELP = "write a model folder and a function for an ONNX file, marking every guessed value # REVIEW"

TASKS = (
    "image_classification",
    "image_segmentation",
    "text_classification",
    "tabular_classification",
    "timeseries_risk",
    "tensor",
)
IMAGE_TASKS = ("image_classification", "image_segmentation")
CLASSIFICATION_TASKS = ("image_classification", "text_classification", "tabular_classification")
GUESSED_BATCH = 32
NOTICE = "demonstration model, not for clinical use"
HANDLER = "from medfn.lambda_handler import make_handler\n\nhandler = make_handler(__file__)\n"
# Nodes that pass their input's values through: the node behind them says what the output holds.
_PASS_THROUGH = {"Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Cast", "Transpose"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="the ONNX file")
    parser.add_argument("--name", required=True, help="the model's and the function's name (letters, digits, _ or -)")
    parser.add_argument("--task", required=True, choices=TASKS, help="what the task route does with the model")
    parser.add_argument(
        "--labels", metavar="A,B,...", help="the classes, comma-separated, in the output's order (default: class_0...)"
    )
    parser.add_argument("--store", type=Path, default=Path("model_store"), help="the model store folder")
    parser.add_argument("--functions", type=Path, help="the functions folder (default: $MEDFN_FUNCTIONS or functions)")
    parser.add_argument("--version", type=int, default=1, help="the version folder the graph is copied to")
    parser.add_argument("--force", action="store_true", help="overwrite the model's and the function's files")


# What was read from the graph ---------------------------------------------------------------


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


# What is written -----------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML's basic-string escapes
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


class TomlFile:
    """A TOML file written line by line; every guess gets `# REVIEW: why` above its value."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self.reviews: list[str] = []
        self.section = ""

    def table(self, header: str, comment: str = "") -> None:
        if self.lines:
            self.lines.append("")
        self.lines.append(header)
        self.section = header.strip("[]")
        if comment:
            self.note(comment)

    def note(self, text: str) -> None:
        self.lines.append(f"# {text}")

    def review(self, why: str, key: str = "") -> None:
        self.lines.append(f"# REVIEW: {why}")
        where = ".".join(part for part in (self.section, key) if part)
        self.reviews.append(f"{where}: {why}")

    def set(self, key: str, value: Any, review: str = "") -> None:
        if review:
            self.review(review, key)
        line = f"{key} = {toml_value(value)}"
        if len(line) > 100 and isinstance(value, list):  # one item a line, as model_store's own files
            line = f"{key} = [\n" + "".join(f"    {toml_value(item)},\n" for item in value) + "]"
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@dataclass
class Plan:
    """What the command writes, decided from the graph and the arguments, before anything is."""

    args: argparse.Namespace
    graph: Graph
    model_dir: Path
    function_dir: Path
    onnx_note: str = ""

    def __post_init__(self) -> None:
        if not self.graph.read:
            self.onnx_note = (
                "the onnx package is not installed, so the graph's nodes were not read (pip install onnx for"
                " better guesses)"
            )

    # the model ---------------------------------------------------------------------------

    def model_toml(self, sha256: str) -> TomlFile:
        from medfn.errors import BadRequest

        args, graph = self.args, self.graph
        toml = TomlFile(self.model_dir / "model.toml")
        toml.note(f"Written by `medfn import {args.model.name}`: check every REVIEW, then `medfn check {args.name}`.")
        toml.set("name", args.name)
        toml.set("task", args.task)
        if args.task != "tensor" and len(graph.inputs) != 1:
            names = ", ".join(repr(t.name) for t in graph.inputs)
            raise BadRequest(f"task {args.task} feeds one input; the graph takes {names}: import it as --task tensor")
        for tensor in graph.inputs:
            if tensor.datatype is None:
                raise BadRequest(f"input {tensor.name!r} is {tensor.type}: medfn feeds tensors of numbers only")
        toml.set("max_batch_size", *self.batch())
        toml.table("[version_policy]")
        toml.set("policy", "latest")
        for tensor in graph.inputs:
            self.tensor(toml, "[[inputs]]", tensor)
        outputs = [t for t in graph.outputs if t.datatype is not None]
        for tensor in outputs:
            self.tensor(toml, "[[outputs]]", tensor)
        skipped = [t for t in graph.outputs if t.datatype is None]
        if not outputs:
            raise BadRequest(f"{args.model} has no tensor output medfn can serve{self.zipmap_advice(skipped)}")
        if skipped:
            toml.note(
                "Not declared: outputs that are no tensor of numbers ("
                + ", ".join(f"{t.name!r} {t.type}" for t in skipped)
                + ")."
            )
        if args.task in IMAGE_TASKS:
            self.image_preprocessing(toml)
        elif args.task == "text_classification":
            toml.table("[preprocessing]")
            v = args.version
            toml.review(
                f"a text model needs its vocabulary: put vocab.json (token -> id) in {v}/ beside model.onnx and"
                f" its sha256 under [versions.{v}.sha256]; set pattern, lowercase, unk_id, max_tokens as it was"
                " trained (model_store/README.md)"
            )
        elif args.task in ("tabular_classification", "timeseries_risk"):
            self.features(toml)
        if args.task != "tensor":
            self.postprocessing(toml, outputs, skipped)
        toml.table(f"[versions.{args.version}.sha256]")
        toml.set('"model.onnx"', sha256)
        self.card(toml)
        return toml

    def batch(self) -> tuple[int, str]:
        firsts = [t.dims[0] if t.dims else 0 for t in self.graph.inputs]
        first = self.graph.inputs[0]
        if firsts and all(not (isinstance(d, int) and d >= 0) for d in firsts):
            named = f" ({first.dims[0]!r})" if isinstance(first.dims[0], str) else ""
            return GUESSED_BATCH, (
                f"the first dim of input {first.name!r} is free{named}: taken as a batch axis; {GUESSED_BATCH}"
                " requests a batch is a guess (mind the memory of the largest batch)" + self.series_note()
            )
        if firsts and firsts[0] == 1:
            why = f"the first dim of input {first.name!r} is fixed at 1"
        else:
            why = f"input {first.name!r} {first.dims_text()} has no free first dim"
        return 0, f"{why}: no batch axis, one request a run (0); export it with a dynamic first axis to batch"

    def series_note(self) -> str:
        series = self.graph.inputs[0]
        if self.args.task != "timeseries_risk" or len(series.dims) != 3 or series.fixed(1) is not None:
            return ""
        return "; series of different lengths share no batch: 1 unless the graph takes a padding mask"

    @staticmethod
    def tensor(toml: TomlFile, header: str, tensor: Tensor) -> None:
        free = [str(d) for d in tensor.dims if isinstance(d, str)]
        toml.table(header, f"-1: any size (the graph names {', '.join(free)})" if free else "")
        toml.set("name", tensor.name)
        toml.set("datatype", tensor.datatype)
        toml.set("shape", tensor.shape)

    def image_preprocessing(self, toml: TomlFile) -> None:
        from medfn.errors import BadRequest

        image = self.graph.inputs[0]
        if len(image.dims) != 4:
            raise BadRequest(
                f"input {image.name!r} {image.dims_text()}: an image task takes [N, C, H, W] or [N, H, W, C]"
            )
        first, last = image.fixed(1), image.fixed(3)
        shape = image.dims_text()
        if first in (1, 3):
            layout, channels, height, width = "NCHW", first, 2, 3
            why = f"dim 1 of {shape} is {first}, taken as the channels"
            if last in (1, 3):
                why += f" (the last dim, {last}, could be: then NHWC)"
        elif last in (1, 3):
            layout, channels, height, width = "NHWC", last, 1, 2
            why = f"the last dim of {shape} is {last}, taken as the channels"
        else:
            raise BadRequest(
                f"input {image.name!r} {shape}: neither dim 1 (NCHW) nor the last (NHWC) is 1 or 3 channels"
            )
        toml.table("[preprocessing]")
        toml.set("layout", layout, why)
        if channels == 1:
            toml.set("color", "L")
        else:
            toml.set("color", "RGB", "3 channels: RGB assumed; BGR if it was trained on images read by OpenCV")
        size = [image.fixed(height), image.fixed(width)]
        if None in size:
            guessed = [224 if s is None else s for s in size]
            toml.set("size", guessed, f"{shape} does not fix the height and width: 224 guessed where free")
        else:
            toml.set("size", size)
        toml.set("scale", "unit", "pixels scaled to 0-1 assumed (byte: 0-255, as some exports expect)")
        channels_text = "1 value" if channels == 1 else "1 value or 3"
        toml.set("mean", [0.0], f"no normalisation assumed: the training's per-channel mean ({channels_text})")
        toml.set("std", [1.0], f"no normalisation assumed: the training's per-channel std ({channels_text})")
        toml.set("resize", "bilinear", "bilinear resampling to the model's size assumed: match the training's")
        toml.set("aspect", "stretch", "scans of another aspect ratio are stretched: pad or crop if trained so")

    def features(self, toml: TomlFile) -> None:
        from medfn.errors import BadRequest

        tensor = self.graph.inputs[0]
        rank = 2 if self.args.task == "tabular_classification" else 3
        if len(tensor.dims) not in (rank - 1, rank) or tensor.fixed(-1) is None:
            what = "[N, features]" if rank == 2 else "[N, time, features]"
            raise BadRequest(
                f"input {tensor.name!r} {tensor.dims_text()}: task {self.args.task} takes {what},"
                " with the number of features fixed"
            )
        count = tensor.fixed(-1) or 0
        toml.table("[preprocessing]")
        toml.set(
            "features",
            [f"feature_{i}" for i in range(count)],
            f"the graph does not name its {count} columns: name them, in the input's order",
        )

    # reading the answer -----------------------------------------------------------------

    def postprocessing(self, toml: TomlFile, outputs: list[Tensor], skipped: list[Tensor]) -> None:
        args = self.args
        output, why = self.pick_output(outputs, skipped)
        toml.table("[postprocessing]")
        toml.set("output", output.name, why)
        ends = self.graph.last_ops.get(output.name)
        if args.task == "image_segmentation":
            if ends not in ("Sigmoid", "Softmax"):
                toml.review(self.unread(f"output {output.name!r} must hold probabilities (no activation is applied)"))
            toml.set("threshold", 0.5, "pixels with a probability of 0.5 or more are in the mask: a guess")
            return
        if args.task == "timeseries_risk":
            if ends != "Sigmoid":
                toml.review(self.unread(f"output {output.name!r} is read as a probability (no activation is applied)"))
            toml.set("labels", ["no event", "event"], "the two outcomes the risk is the probability of")
            return
        self.classes(toml, output)

    def pick_output(self, outputs: list[Tensor], skipped: list[Tensor]) -> tuple[Tensor, str]:
        from medfn.errors import BadRequest

        numbers = [t for t in outputs if t.datatype in ("FP16", "FP32", "FP64")]
        if not numbers:
            raise BadRequest(
                f"{self.args.model} has no floating-point output to read {self.args.task} from"
                + self.zipmap_advice(skipped)
            )
        named = [t for t in numbers if "prob" in t.name.lower()]
        chosen = (named or numbers)[0]
        if len(numbers) == 1:
            return chosen, ""
        others = ", ".join(repr(t.name) for t in numbers if t is not chosen)
        reason = "its name says probabilities" if named else "the first floating-point output"
        return chosen, f"read from {chosen.name!r} ({reason}), not {others}"

    def classes(self, toml: TomlFile, output: Tensor) -> None:
        from medfn.errors import BadRequest

        args = self.args
        count = output.fixed(-1) if output.dims else 1
        given = [label.strip() for label in args.labels.split(",")] if args.labels else None
        if given is not None and not all(given):
            raise BadRequest(f"--labels {args.labels!r} has an empty label")
        if count is None and given is None:
            raise BadRequest(
                f"output {output.name!r} {output.dims_text()} does not fix its classes: name them with --labels"
            )
        single = count == 1
        wanted = 2 if single else count
        if given is not None and wanted is not None and len(given) != wanted:
            say = "2 (a single score: the negative label, then the positive)" if single else str(wanted)
            raise BadRequest(f"--labels names {len(given)}; output {output.name!r} {output.dims_text()} needs {say}")
        if given is not None:
            labels = given
            toml.set("labels", labels)
        else:
            labels = ["negative", "positive"] if single else [f"class_{i}" for i in range(count or 0)]
            toml.set("labels", labels, f"no --labels: name the {len(labels)} classes, in the output's order")
        ends = self.graph.last_ops.get(output.name)
        if ends in ("Softmax", "Sigmoid"):
            toml.note(f"the graph ends in {ends}: its output is probabilities already")
        elif ends == "LogSoftmax":
            toml.note("the graph ends in LogSoftmax: softmax turns its log-probabilities back into probabilities")
        toml.set("activation", *self.activation(output, single))
        if single:
            toml.set("threshold", 0.5, "a score of 0.5 or more answers positive_label: a guess")
            toml.set("positive_label", labels[1], "the second label taken as the one a score stands for")

    def activation(self, output: Tensor, single: bool) -> tuple[str, str]:
        ends = self.graph.last_ops.get(output.name)
        name = output.name
        if ends in ("Softmax", "Sigmoid"):
            return "none", ""
        if ends == "LogSoftmax":
            return "softmax", ""
        labelled = any(t.datatype == "INT64" and "label" in t.name.lower() for t in self.graph.outputs)
        if name in self.graph.classifier_ops or (labelled and "prob" in name.lower()):
            how = (
                "an ai.onnx.ml classifier makes it" if name in self.graph.classifier_ops else "a label output beside it"
            )
            return "none", f"{name!r} is taken as probabilities already (scikit-learn style: {how})"
        if not self.graph.read and "prob" in name.lower():
            return "none", self.unread(f"{name!r} is taken as probabilities from its name")
        ending = f"the graph ends in {ends}" if ends else "no Softmax or Sigmoid"
        if single:
            return "sigmoid", self.unread(f"one column and {ending}: taken as a logit")
        return "softmax", self.unread(f"{output.fixed(-1) or 'several'} columns and {ending}: taken as logits")

    def unread(self, why: str) -> str:
        return f"{why}; {self.onnx_note}" if self.onnx_note else why

    @staticmethod
    def zipmap_advice(skipped: Sequence[Tensor]) -> str:
        zipmaps = [t.name for t in skipped if t.type.startswith("seq(map(")]
        if not zipmaps:
            return ""
        return (
            f"; {zipmaps[0]!r} is a ZipMap (a list of dicts), not a tensor: export it from scikit-learn with"
            " options={id(model): {'zipmap': False}}"
        )

    @staticmethod
    def card(toml: TomlFile) -> None:
        toml.table("[card]")
        placeholders = {
            "summary": "what the model predicts, from what input",
            "data": "what it was trained and tested on: source, size, dates, population",
            "intended_use": "who may use it, for what; what it is not for",
            "limitations": "where it fails or was never tested",
        }
        for key, what in placeholders.items():
            toml.set(key, f"TO WRITE: {what}", f"a placeholder: {what}")
        toml.set("notice", NOTICE, "answers carry this notice: change it only if the model is cleared for more")

    # the function ------------------------------------------------------------------------

    def function_toml(self, model_bytes: int) -> TomlFile:
        args = self.args
        toml = TomlFile(self.function_dir / "function.toml")
        toml.note(f"{args.name}: written by `medfn import`; see Add your own model in the README.")
        toml.set("name", args.name)
        toml.set("description", f"TO WRITE ({args.task})", "a placeholder: one line on what the function answers")
        toml.set("model", args.name)
        toml.set("runtime", "zip")
        toml.set("accelerator", "cpu")
        toml.set("architecture", "arm64")
        floor = 1024 if args.task in IMAGE_TASKS else 512
        mib = model_bytes / 2**20
        memory = min(10240, max(floor, 256 * math.ceil((256 + 4 * mib) / 256)))
        toml.set(
            "memory_mb",
            memory,
            f"from the graph's {mib:.1f} MiB and the task: measure (medfn bench) and set what it needs",
        )
        toml.set("timeout_s", 30, "30 s guessed: set it from a measured call")
        toml.table("[triggers]")
        toml.set("http", True)
        toml.set("uploads", False)
        if args.task in IMAGE_TASKS:
            toml.lines[-1] += "  # true: also process scans uploaded to the upload bucket"
        return toml


def run(args: argparse.Namespace) -> int:
    import hashlib
    import os
    import shutil

    from medfn.errors import BadRequest, NotFound

    if not _NAME.fullmatch(args.name):
        raise BadRequest(
            f"--name {args.name!r}: use letters, digits, _ or - (64 at most), starting with one of the first two"
        )
    if args.version < 1:
        raise BadRequest(f"--version {args.version}: versions are 1, 2, ...")
    if not args.model.is_file():
        raise NotFound(f"no such file: {args.model}")
    functions = args.functions or Path(os.environ.get("MEDFN_FUNCTIONS", "functions"))
    plan = Plan(args, inspect(args.model), args.store / args.name, functions / args.name)
    if not args.force:
        for folder in (plan.model_dir, plan.function_dir):
            if folder.exists():
                raise BadRequest(f"{folder} already exists: pass --force to overwrite its files")

    with args.model.open("rb") as file:
        sha256 = hashlib.file_digest(file, "sha256").hexdigest()
    # Everything is decided (and refused) before the first file is written.
    model_toml = plan.model_toml(sha256)
    function_toml = plan.function_toml(args.model.stat().st_size)
    copy = plan.model_dir / str(args.version) / "model.onnx"
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.model, copy)
    model_toml.path.write_text(model_toml.text(), "utf-8")
    plan.function_dir.mkdir(parents=True, exist_ok=True)
    function_toml.path.write_text(function_toml.text(), "utf-8")
    handler = plan.function_dir / "handler.py"
    handler.write_text(HANDLER, "utf-8")

    print(f"wrote {model_toml.path}")
    print(f"wrote {copy} (sha256 {sha256})")
    print(f"wrote {function_toml.path}")
    print(f"wrote {handler}")
    if plan.onnx_note:
        print(f"note: {plan.onnx_note}")
    count = len(model_toml.reviews) + len(function_toml.reviews)
    print(f"{count} values to review, each marked # REVIEW in its file:")
    for toml in (model_toml, function_toml):
        print(f"  {toml.path}")
        for line in toml.reviews:
            print(f"    {line}")
    store = "" if args.store == Path("model_store") else f" --store {args.store}"
    print(f"next: fix them, then `medfn check {args.name}{store}`")
    return 0
