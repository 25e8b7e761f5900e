"""`medfn check [MODEL...]`: every problem of a model folder, before it is deployed.

Loads each version the way a function does (sha256 of every artifact, the session, the task's
extras) and holds model.toml against the graph; prints what is wrong, one line each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "check model folders against their graphs: names, datatypes, shapes, labels, features, vocabulary"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", help="model names (default: every model in the store)")
    parser.add_argument("--store", type=Path, default=Path("model_store"), help="the model store folder")


def run(args: argparse.Namespace) -> int:
    import logging

    from medfn.function import check_models

    logging.getLogger("medfn").setLevel(logging.CRITICAL)  # each problem is printed once, below
    problems = check_models(args.store, args.models or None)
    for line in problems or ["every model is ready"]:
        print(line)
    return 1 if problems else 0
