"""cfn-lint over synthesized templates, as a library (no subprocess, one rule load)."""

from __future__ import annotations

import os
from pathlib import Path

# The stack is region-agnostic; lint it for the region it will be deployed to (SnapStart and
# some instance features exist only in some regions, so "all regions" reports false errors).
DEFAULT_REGION = "us-east-1"


def lint_templates(templates: list[Path], region: str | None = None) -> list[str]:
    """cfn-lint errors (E-rules) as printable lines; warnings are left to reviewers."""
    from cfnlint.api import ManualArgs, lint

    regions = [region or os.environ.get("CDK_DEFAULT_REGION") or os.environ.get("AWS_REGION") or DEFAULT_REGION]
    lines = []
    for template in templates:
        for match in lint(template.read_text("utf-8"), config=ManualArgs(regions=regions)):
            if match.rule.id.startswith("E"):
                lines.append(f"{template.name}:{match.linenumber}: {match.rule.id} {match.message}")
    return lines
