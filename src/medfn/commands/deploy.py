"""`medfn deploy`: `medfn synth`, then `npx aws-cdk@2 deploy` of the checked cloud assembly."""

from __future__ import annotations

import argparse
import shutil
import subprocess

from medfn.commands import synth
from medfn.errors import BadRequest

HELP = "synthesize and check the CDK app, then deploy it with `npx aws-cdk@2 deploy` (needs AWS credentials)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    synth.add_arguments(parser)
    parser.add_argument("--profile", help="AWS profile for the CDK CLI")
    parser.add_argument(
        "--require-approval",
        choices=["never", "any-change", "broadening"],
        default="broadening",
        help="ask before IAM or security-group widening (the CDK default)",
    )


def command(args: argparse.Namespace) -> list[str]:
    # --app names the folder synth wrote, so the CLI deploys exactly what was checked
    line = ["npx", "--yes", "aws-cdk@2", "deploy", "--app", str(args.out.resolve()), "--all"]
    line += ["--require-approval", args.require_approval]
    if args.profile:
        line += ["--profile", args.profile]
    return line


def run(args: argparse.Namespace) -> int:
    if shutil.which("npx") is None:
        raise BadRequest("npx not found: install Node.js 20 or newer (the CDK CLI runs on it), then run again")
    status = synth.synthesize(args)
    if status != 0:
        return status
    return subprocess.run(command(args)).returncode
