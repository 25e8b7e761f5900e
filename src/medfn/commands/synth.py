"""`medfn synth`: package the functions, synthesize the CDK app, check it with cdk-nag and cfn-lint."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = "build the CloudFormation templates in cdk.out/ and check them (cdk-nag AwsSolutions + HIPAA, cfn-lint)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("cdk.out"), help="cloud assembly folder (default: cdk.out)")
    parser.add_argument(
        "--package",
        choices=["missing", "all", "none"],
        default="missing",
        help="which function zips to (re)build first (default: those not in dist/ yet)",
    )


def synthesize(args: argparse.Namespace) -> int:
    """Shared by `medfn deploy`: package, synth with the checks on, lint; 0 when all pass."""
    import shutil

    from medfn.config import discover_functions
    from medfn.errors import BadRequest
    from medfn.function import check_models
    from medfn.packaging import REPO, UNZIPPED_LIMIT, ZIP_LIMIT, build_package

    if shutil.which("node") is None:  # the CDK's constructs run in Node, through jsii
        raise BadRequest("needs Node.js 20 or newer on PATH (the CDK runs on it): install it, then run again")
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    configs = discover_functions(REPO / "functions")
    problems = check_models(REPO / "model_store", sorted({config.model for config in configs}))
    if problems:
        print("\n".join(["medfn check found problems; nothing was synthesized:", *problems]))
        return 1
    for config in configs:
        zip_path = REPO / "dist" / f"{config.name}-{config.architecture}.zip"
        wanted = args.package == "all" or (args.package == "missing" and not zip_path.is_file())
        if config.runtime == "zip" and config.accelerator == "cpu" and wanted:
            package = build_package(config)
            print(package.summary())
            if package.zipped_bytes > ZIP_LIMIT or package.unzipped_bytes > UNZIPPED_LIMIT:
                print(f"{config.name}: over Lambda's zip limits (medfn package says why); nothing was synthesized")
                return 1
    sys.path.insert(0, str(REPO / "infra"))
    from medfn_infra.app import build_app
    from medfn_infra.checks import lint_templates

    out = args.out.resolve()
    try:
        assembly = build_app(out, nag=True).synth()  # raises on any unacknowledged finding
    except Exception as exc:  # jsii surfaces the validation failure as a generic error
        print(f"synth failed: {exc}\nthe full report: {out / 'validation-report.json'}")
        return 1
    errors = lint_templates([Path(stack.template_full_path) for stack in assembly.stacks])
    for line in errors:
        print(line)
    print(f"cdk-nag (AwsSolutions, HIPAA.Security): no unacknowledged findings; cfn-lint: {len(errors)} errors")
    print(f"templates in {out}")
    return 1 if errors else 0


def run(args: argparse.Namespace) -> int:
    return synthesize(args)
