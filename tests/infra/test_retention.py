"""Retention by a written policy (medfn_infra.storage.RETENTION, quoted in docs/deploy.md):
bucket lifecycles, table backups, and every log group declared with retention and the data key,
CDK's own helper functions' and API Gateway's execution logs included."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Template

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "infra"))

from medfn_infra.storage import RETENTION  # noqa: E402


def bucket(template: Template, prefix: str) -> dict[str, Any]:
    [found] = [
        v["Properties"]
        for k, v in template.find_resources("AWS::S3::Bucket").items()
        if k.startswith(f"Storage{prefix}")
    ]
    return found


def rules(props: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r.get("Id", str(i)): r for i, r in enumerate(props["LifecycleConfiguration"]["Rules"])}


def assert_logs_declared(raw: dict[str, Any]) -> None:
    resources = raw["Resources"]
    groups = {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::Logs::LogGroup"}
    for logical, props in groups.items():
        assert props["RetentionInDays"] == RETENTION["logs"], logical
        assert props["KmsKeyId"]["Fn::GetAtt"][0].startswith("StorageKey"), logical  # the data key
    for logical, function in resources.items():
        if function["Type"] == "AWS::Lambda::Function":
            target = function["Properties"].get("LoggingConfig", {}).get("LogGroup")
            assert target is not None and target.get("Ref") in groups, f"{logical} logs to a group nobody declared"


def test_every_log_group_is_declared_with_retention_and_the_data_key(template: Template) -> None:
    raw = template.to_json()
    assert_logs_declared(raw)
    groups = [v for v in raw["Resources"].values() if v["Type"] == "AWS::Logs::LogGroup"]
    execution = [g for g in groups if "API-Gateway-Execution-Logs_" in json.dumps(g["Properties"].get("LogGroupName"))]
    assert len(execution) == 1
    [(stage_id, stage)] = template.find_resources("AWS::ApiGateway::Stage").items()
    [execution_id] = [k for k, v in raw["Resources"].items() if v is execution[0]]
    assert execution_id in stage["DependsOn"]


def test_buckets_keep_data_as_the_retention_policy_says(template: Template) -> None:
    uploads, results, models = (rules(bucket(template, n)) for n in ("Uploads", "Results", "Models"))
    assert uploads["expire"]["ExpirationInDays"] == RETENTION["uploads"]
    assert uploads["noncurrent"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == RETENTION["uploads_noncurrent"]
    assert results["noncurrent"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == RETENTION["results_noncurrent"]
    assert "expire" not in results  # results are kept until the customer's records policy says otherwise
    assert models["noncurrent"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == RETENTION["models_noncurrent"]
    for found in (uploads, results, models):
        assert found["delete-markers"]["ExpiredObjectDeleteMarker"] is True
        assert found["noncurrent"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
    [access] = bucket(template, "AccessLogs")["LifecycleConfiguration"]["Rules"]
    assert access["ExpirationInDays"] == RETENTION["access_logs"]


def test_results_expire_when_the_deployment_says_so(project_root: Path, tmp_path: Path) -> None:
    from medfn_infra.app import build_app

    app = build_app(tmp_path, repo=project_root, nag=False, context={"medfn:results_retention_days": 2555})
    [stack] = app.synth().stacks
    assert rules(bucket(Template.from_json(stack.template), "Results"))["expire"]["ExpirationInDays"] == 2555


def test_the_tables_are_in_a_daily_backup_plan(template: Template) -> None:
    tables = template.find_resources("AWS::DynamoDB::Table")
    assert {t.rstrip("0123456789ABCDEF") for t in tables} == {"StorageStatusTable", "StorageSeriesTable"}
    selections = [
        s["Properties"]["BackupSelection"] for s in template.find_resources("AWS::Backup::BackupSelection").values()
    ]
    for table in tables:
        assert sum(table in json.dumps(s["Resources"]) for s in selections) == 1, table
    assert len({json.dumps(s["IamRoleArn"]) for s in selections}) == 1  # one backup role for both
    [plan] = template.find_resources("AWS::Backup::BackupPlan").values()
    [rule] = plan["Properties"]["BackupPlan"]["BackupPlanRule"]
    assert rule["Lifecycle"]["DeleteAfterDays"] == RETENTION["table_backups"]
    assert rule["ScheduleExpression"].startswith("cron(")
    [vault] = template.find_resources("AWS::Backup::BackupVault").values()
    assert vault["Properties"]["EncryptionKeyArn"]["Fn::GetAtt"][0].startswith("StorageKey")
    assert vault["DeletionPolicy"] == "Retain"
