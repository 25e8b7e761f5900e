"""`medfn package <function>`: the function's Lambda zip, built offline without Docker."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "build dist/<function>-<arch>.zip for Lambda (python3.12, manylinux wheels, no Docker)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("function", help="a folder name under functions/")
    parser.add_argument("--arch", choices=["arm64", "x86_64"], help="default: the function.toml architecture")
    parser.add_argument("--functions", help="folder of functions/*/function.toml (default: ./functions)")
    parser.add_argument("--dist", type=Path, default=Path("dist"))
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
    if package.unzipped_bytes > UNZIPPED_LIMIT:
        print('over Lambda\'s 250 MiB unzipped limit: trim dependencies or set runtime = "container"')
        return 1
    if package.zipped_bytes > ZIP_LIMIT:
        print("over the 50 MiB direct-upload limit: fine for `medfn deploy` (CDK uploads through S3)")
    return 0
