"""`medfn usage`: what each API key spent on each model, from the local usage store."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "print calls per API key and model, with the estimated Lambda cost"
DEFAULT_STORE = Path(".medfn") / "usage.sqlite3"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"the usage store (default: {DEFAULT_STORE})")


def run(args: argparse.Namespace) -> int:
    from medfn.metering.report import render, summarize
    from medfn.metering.sqlite_store import read_usage

    if not args.store.is_file():
        print(f"no usage store at {args.store}: run `medfn serve` and make some calls first")
        return 1
    print(render(summarize(read_usage(args.store))))
    return 0
