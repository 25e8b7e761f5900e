"""Build the CDK app: discover the project, add the stack, attach the security checks."""

from __future__ import annotations

import os
from pathlib import Path

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks

from medfn_infra.project import REPO, load_project
from medfn_infra.settings import Settings
from medfn_infra.stack import MedfnStack

STACK_NAME = "medfn"
# CDK feature flags this app relies on (set here, so `medfn synth` and `cdk` agree).
FEATURE_FLAGS = {
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,  # log delivery by bucket policy, not ACLs
    "@aws-cdk/aws-iam:minimizePolicies": True,
}


def build_app(
    outdir: Path | None = None, *, repo: Path = REPO, nag: bool | None = None, context: dict[str, object] | None = None
) -> App:
    """The app; `nag` (default: unless CDK_VALIDATION=false) runs cdk-nag at synth; `context`
    sets `medfn:<name>` choices (medfn_infra.settings) as `cdk -c` would."""
    project = load_project(
        functions_dir=repo / "functions",
        model_store=repo / "model_store",
        dist=repo / "dist",
        staging=repo / ".medfn" / "platform",
    )
    app = App(outdir=str(outdir) if outdir else None, context={**FEATURE_FLAGS, **(context or {})})
    env = Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION"))
    # SnapStart for Python bills its snapshot cache while a version is published (docs/deploy.md);
    # MEDFN_SNAPSTART=0 trades faster cold starts for nothing at rest. The other choices: settings.py.
    settings = Settings.load(app.node)
    MedfnStack(
        app,
        STACK_NAME,
        project,
        settings,
        env=env,
        description="medfn: medical ONNX models as pay-per-call APIs",
    )
    if nag if nag is not None else os.environ.get("CDK_VALIDATION", "true").lower() != "false":
        Validations.of(app).add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app))
    return app
