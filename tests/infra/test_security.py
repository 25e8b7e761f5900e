"""docs/deploy.md's "Security" section cannot drift from the stack: every cdk-nag finding the
stack acknowledges, in every choice of settings, gives a reason registered in
medfn_infra.acknowledgements.REASONS, and the section quotes each registered reason exactly,
with its rules; so do its retention table and the alarm runbook."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "infra"))

from medfn_infra.acknowledgements import REASONS, Reason  # noqa: E402
from medfn_infra.storage import RETENTION  # noqa: E402
from tests.infra.stack_project import DESTINATION  # noqa: E402

USER_POOL = "arn:aws:cognito-idp:us-east-1:111122223333:userpool/us-east-1_Example"
# Every choice that changes what is acknowledged, on the repository's functions (plus one).
VARIANTS: dict[str, dict[str, object]] = {
    "default": {},
    "keys only, no WAF": {"medfn:auth": "api_key", "medfn:waf": "false"},
    "cognito": {"medfn:auth": "cognito", "medfn:user_pool_arn": USER_POOL},
    "a DICOMweb destination": DESTINATION,  # results out to a PACS: its secret, and its reason for no VPC
}


def security_section() -> str:
    text = (REPO / "docs" / "deploy.md").read_text("utf-8")
    start = text.index("\n## Security\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def acknowledged(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, str, str]]:
    """(variant, construct path, rule, reason) for every acknowledgement, cdk-nag on."""
    from tests.infra.security_review import review
    from tests.infra.test_gpu_service import GPU_CONTEXT, gpu_project

    found = []
    for name, context in VARIANTS.items():
        found += [(name, *a) for a in review(project_root, tmp_path_factory.mktemp("cdk.out"), context)]
    gpu = gpu_project(tmp_path_factory.mktemp("gpu_project"))
    found += [("GPU service", *a) for a in review(gpu, tmp_path_factory.mktemp("cdk.out"), GPU_CONTEXT)]
    return found


def reason_of(rule: str, text: str) -> Reason | None:
    from tests.infra.security_review import NAG_RULE

    found = NAG_RULE.search(rule)  # the metadata spells it "Annotation::AwsSolutions-IAM5[...]"
    base = found.group(0) if found else rule
    return next((r for r in REASONS.values() if base in r.rules and text.endswith(f": {r.text}")), None)


def test_every_acknowledgement_gives_a_registered_reason(acknowledged: list[tuple[str, str, str, str]]) -> None:
    assert len(acknowledged) > 50
    stray = [f"[{variant}] {path}: {rule}: {text}" for variant, path, rule, text in acknowledged
             if reason_of(rule, text) is None]  # fmt: skip
    assert not stray, "acknowledgements whose reason is not in REASONS:\n" + "\n".join(stray)


def test_every_reason_is_given_somewhere(acknowledged: list[tuple[str, str, str, str]]) -> None:
    given = {id(reason_of(rule, text)) for _, _, rule, text in acknowledged}
    unused = [key for key, reason in REASONS.items() if id(reason) not in given]
    assert not unused, f"registered but never given (remove them, or the finding is gone): {unused}"


def test_the_security_section_quotes_every_reason_with_its_rules() -> None:
    section = flat(security_section())
    rows = {flat(line) for line in security_section().splitlines() if line.startswith("| ")}
    for key, reason in REASONS.items():
        row = f"| {', '.join(reason.rules)} | {flat(reason.text)} |"
        assert row in rows, f"docs/deploy.md (Security) lacks the row of reason {key!r}:\n{row}"
        assert flat(reason.text) in section


def test_the_security_section_states_the_retention_policy() -> None:
    section = security_section()
    retention = section[section.index("### Retention") :]
    retention = retention[: retention.index("\n### ", 5)]
    for name, days in RETENTION.items():
        assert re.search(rf"\b{days} days?\b", retention), f"RETENTION[{name!r}] = {days} is not in the docs"


def test_the_alarm_runbook_names_every_alarm_and_the_redrive() -> None:
    section = security_section()
    runbook = section[section.index("### When an alarm fires") :]
    alarms = (REPO / "infra" / "medfn_infra" / "alarms.py").read_text("utf-8")
    for suffix in sorted(set(re.findall(r'f"\{name\}(-[a-z-]+)"', alarms))):
        assert f"`{suffix}`" in runbook, suffix
    for command in ("aws sqs start-message-move-task", "aws sqs receive-message", "aws dynamodb get-item"):
        assert command in runbook
