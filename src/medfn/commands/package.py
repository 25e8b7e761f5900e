"""`medfn package <function>`: the function's Lambda zip, built offline without Docker."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "build dist/<function>-<arch>.zip for Lambda (python3.12, manylinux wheels, no Docker)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("function", help="a folder name under functions/")
    parser.add_argument("--arch", choices=["arm64", "x86_64"], help="default: the function.toml architecture")
    parser.add_argument("--functions", help="folder of functions/*/function.toml (default: ./functions)")
    parser.add_argument("--dist", type=Path, default=Path("dist"), help="folder the zip is written to")
    parser.add_argument(
        "--with-models",
        action="store_true",
        help="bundle model_store/<model> in the zip, for running it outside AWS (AWS reads the model bucket)",
    )


def run(args: argparse.Namespace) -> int:
    from medfn.config import FunctionConfig
    from medfn.gateway import functions_dir
    from medfn.packaging import REPO, UNZIPPED_LIMIT, ZIP_LIMIT, build_package

    directory = functions_dir(args.functions) / args.function
    if not (directory / "function.toml").is_file():
        print(f"no function {args.function!r}: {directory / 'function.toml'} does not exist")
        return 2
    config = FunctionConfig.load(directory)
    package = build_package(
        config, args.arch, dist=args.dist.resolve(), model_store=REPO / "model_store" if args.with_models else None
    )
    print(package.summary())
    over = [
        f"Lambda's {limit // 2**20} MiB {what} limit"
        for size, limit, what in ((package.zipped_bytes, ZIP_LIMIT, "direct-upload"),
                                  (package.unzipped_bytes, UNZIPPED_LIMIT, "unzipped"))
        if size > limit
    ]  # fmt: skip
    if over:
        print(f"over {' and '.join(over)}: leave out what the function never imports (PRUNED in "
              'src/medfn/packaging/prune.py), or set runtime = "container" in its function.toml')  # fmt: skip
        return 1
    return 0
