"""`medfn <command>`: one module per command under medfn.commands, imported when named.

Each command module has `HELP`, `add_arguments(parser)` and `run(args) -> int`, and keeps
its heavy imports inside `run`, so `medfn --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules under medfn.commands; a module named otherwise than its command says so in NAME
# (`import` is a Python keyword, so its module is import_model).
COMMANDS = [
    "serve",
    "predict",
    "watch",
    "check",
    "package",
    "synth",
    "deploy",
    "usage",
    "bench",
    "import_model",
    "listen",
    "work",
]


class _ShowDefaults(argparse.HelpFormatter):
    """Each option's help ends with its default, where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def main(argv: list[str] | None = None) -> int:
    """Run a command. A user's mistake (a missing file, an unknown model, a missing tool) is one
    line on stderr and exit status 2, never a traceback."""
    from medfn.errors import MedfnError

    parser = argparse.ArgumentParser(prog="medfn", description="Serve medical ONNX models, locally and on AWS.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name in COMMANDS:
        module = importlib.import_module(f"medfn.commands.{name}")
        command = getattr(module, "NAME", name)
        modules[command] = module
        sub = commands.add_parser(command, help=module.HELP, description=module.HELP, formatter_class=_ShowDefaults)
        module.add_arguments(sub)
    args = parser.parse_args(argv)
    module = modules[args.command]
    try:
        return int(module.run(args) or 0)
    except MedfnError as exc:
        print(f"medfn {args.command}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
