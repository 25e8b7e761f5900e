"""`medfn import MODEL.onnx --name NAME --task TASK`: a model folder and a function, from a graph.

Reads the graph's inputs and outputs with ONNX Runtime and, where the `onnx` package is installed
(the dev extra; never a Lambda bundle), the graph itself: which node makes each output (a Softmax,
a Sigmoid, a scikit-learn ZipMap). From them it writes `<store>/<NAME>/model.toml`, copies the
graph to `<store>/<NAME>/<version>/model.onnx` with its sha256, and writes
`<functions>/<NAME>/function.toml` and `handler.py`. Every value it had to guess carries a
`# REVIEW: ...` comment on the line above, saying what was guessed from what; the command prints
the same list, then the next step, `medfn check NAME`.

The graph is read by medfn.serving.graph_reading; the drafts are decided, and refused where
medfn cannot serve the graph, by medfn.tasks.draft, before anything is written.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

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
HANDLER = "from medfn.lambda_handler import make_handler\n\nhandler = make_handler(__file__)\n"
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


def run(args: argparse.Namespace) -> int:
    import hashlib
    import os
    import shutil

    from medfn.errors import BadRequest, NotFound
    from medfn.serving.graph_reading import inspect
    from medfn.tasks.draft import Plan

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
