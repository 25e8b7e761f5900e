"""`medfn <command>`: one module per command under medfn.commands, imported when named.

Each command module has `HELP`, `add_arguments(parser)` and `run(args) -> int`, and keeps
its heavy imports inside `run`, so `medfn --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["serve", "predict", "watch", "package", "synth", "deploy", "usage", "bench"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medfn", description="Serve medical ONNX models, locally and on AWS.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"medfn.commands.{name}")
        module.add_arguments(commands.add_parser(name, help=module.HELP, description=module.HELP))
    args = parser.parse_args(argv)
    module = importlib.import_module(f"medfn.commands.{args.command}")
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
