"""The security review both infra tests run: cdk-nag on, cfn-lint on the template, and the
acknowledgements checked to be one resource each, with a rule and a specific reason."""

from __future__ import annotations

import json
import re
from pathlib import Path

NAG_RULE = re.compile(r"(AwsSolutions|HIPAA\.Security)-[A-Za-z0-9]+")


def review(project_root: Path, outdir: Path, context: dict[str, object] | None = None) -> list[tuple[str, str, str]]:
    """Synthesize with nag (and `context`, the `medfn:` choices); assert no finding and no lint
    error; return the acknowledgements. The template is left in `outdir/medfn.template.json`.

    Only cdk-nag's own packs are returned: aws-cdk-lib itself acknowledges cfn-lint's W3010
    (literal AZs) on any stack a VPC is in, and that is not ours to move.
    """
    from medfn_infra.app import build_app
    from medfn_infra.checks import lint_templates

    assembly = build_app(outdir, repo=project_root, nag=True, context=context).synth()  # raises on any finding
    report = outdir / "validation-report.json"
    reports = json.loads(report.read_text())["pluginReports"] if report.exists() else []
    assert [v for r in reports for v in r.get("violations", [])] == []
    assert lint_templates([Path(s.template_full_path) for s in assembly.stacks]) == []

    metadata = json.loads((outdir / "medfn.metadata.json").read_text())
    acknowledged = [(path, rule, reason) for path, entries in metadata.items() for e in entries
                    if e["type"] == "aws:cdk:acknowledged-rules" for rule, reason in e["data"].items()
                    if NAG_RULE.search(rule)]  # fmt: skip
    for path, rule, reason in acknowledged:
        assert path != "/medfn", f"{rule} acknowledged for the whole stack instead of one resource"
        assert len(reason) >= 60, f"{rule} on {path}: the reason is not specific: {reason!r}"
    return acknowledged
