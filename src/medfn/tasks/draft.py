"""A model.toml draft for a graph, every guess marked REVIEW.

`Plan` decides, from what the graph says about itself (medfn.serving.graph_reading) and the
`medfn import` arguments, what model.toml and function.toml hold, refusing (BadRequest) what
medfn cannot serve before anything is written. Every value it had to guess carries a
`# REVIEW: ...` comment on the line above, saying what was guessed from what.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medfn.tasks.draft_toml import TomlFile

if TYPE_CHECKING:
    from medfn.serving.graph_reading import Graph, Tensor

_IMAGE_TASKS = ("image_classification", "image_segmentation")
_GUESSED_BATCH = 32
_NOTICE = "demonstration model, not for clinical use"


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
        if args.task in _IMAGE_TASKS:
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
            return _GUESSED_BATCH, (
                f"the first dim of input {first.name!r} is free{named}: taken as a batch axis; {_GUESSED_BATCH}"
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
        toml.set("notice", _NOTICE, "answers carry this notice: change it only if the model is cleared for more")

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
        floor = 1024 if args.task in _IMAGE_TASKS else 512
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
        if args.task in _IMAGE_TASKS:
            toml.lines[-1] += "  # true: also process scans uploaded to the upload bucket"
        return toml
