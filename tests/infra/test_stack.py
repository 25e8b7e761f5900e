"""The CDK app: resources and properties, cdk-nag (AwsSolutions + HIPAA.Security), cfn-lint.

The app is synthesized once per session (tests/infra/conftest.py) from a copy of the
repository's functions (plus one more, to show new folders are picked up without touching
infra/), models and stand-in zips.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("aws_cdk", reason="the infra extra (aws-cdk-lib) is not installed")

from aws_cdk.assertions import Match, Template  # noqa: E402

from tests.infra.stack_project import (  # noqa: E402
    EXTRA,
    SERIES,
    function_configs,
    function_of,
    is_container,
    lambdas,
    logical_prefix,
)


def test_every_function_folder_becomes_a_lambda(template: Template, project_root: Path) -> None:
    configs = function_configs(project_root)
    assert EXTRA in configs
    ours = [p for p in lambdas(template).values() if "MEDFN_MODEL_SHA256" in p["Environment"]["Variables"]]
    assert len(ours) == len(configs)
    for props in ours:
        if is_container(props):  # runtime = "container": the image's CMD is the handler; SnapStart takes zips only
            assert "Handler" not in props and "SnapStart" not in props and "ImageUri" in props["Code"]
        else:
            assert props["Handler"] == "handler.handler"
            assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert "TargetArn" in props["DeadLetterConfig"]
        assert props["ReservedConcurrentExecutions"] >= 1
    assert any(is_container(props) for props in ours)


def test_memory_timeout_architecture_and_model_come_from_toml(template: Template, project_root: Path) -> None:
    for name, config in function_configs(project_root).items():
        model = tomllib.loads((project_root / "model_store" / config["model"] / "model.toml").read_text())
        props = function_of(template, name)
        assert props["MemorySize"] == config.get("memory_mb", 1024)
        assert props["Timeout"] == config.get("timeout_s", 30)
        assert props["Architectures"] == [config.get("architecture", "arm64")]
        env = props["Environment"]["Variables"]
        assert env["MEDFN_MODEL_SHA256"] == model["versions"]["1"]["sha256"]["model.onnx"]
        store = json.dumps(env["MEDFN_MODEL_STORE"])
        assert "s3://" in store and "/models" in store
        if config.get("reserved_concurrency"):
            assert props["ReservedConcurrentExecutions"] == config["reserved_concurrency"]


def test_each_function_has_a_live_alias_on_a_published_version(template: Template, project_root: Path) -> None:
    assert (
        len(template.find_resources("AWS::Lambda::Alias", {"Properties": {"Name": "live"}}))
        == len(function_configs(project_root)) + 2  # the platform and health functions
    )
    assert len(template.find_resources("AWS::Lambda::Version")) == len(function_configs(project_root)) + 2


def test_roles_read_only_their_own_model_prefix(template: Template) -> None:
    for policy in template.find_resources("AWS::IAM::Policy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        reads = [s for s in statements if s["Action"] == "s3:GetObject"]
        roles = json.dumps(policy["Properties"]["Roles"])
        if not reads or "Platform" in roles or "Health" in roles or "Role" not in roles:
            continue
        resources = json.dumps([s["Resource"] for s in reads])
        if "/models/" in resources:
            assert resources.count("/models/") == 1, f"a function reads more than one model: {resources}"
        listing = [s for s in statements if s["Action"] == "s3:ListBucket"]
        for statement in listing:
            assert "s3:prefix" in statement["Condition"]["StringLike"]


def test_buckets_are_encrypted_versioned_private_logged_and_tls_only(template: Template) -> None:
    buckets = template.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 4  # access logs, models, uploads, results
    kms = 0
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True
        }  # fmt: skip
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        if rule["SSEAlgorithm"] == "aws:kms":
            kms += 1
            assert "LoggingConfiguration" in props
    assert kms == 3
    denies = [
        p
        for p in template.find_resources("AWS::S3::BucketPolicy").values()
        if any(
            s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            for s in p["Properties"]["PolicyDocument"]["Statement"]
        )
    ]
    assert len(denies) == 4
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_model_store_is_deployed_to_the_models_prefix(template: Template) -> None:
    template.has_resource_properties("Custom::CDKBucketDeployment", {"DestinationBucketKeyPrefix": "models"})


def test_rest_api_routes_keys_binary_types_and_logging(template: Template, project_root: Path) -> None:
    template.has_resource_properties(
        "AWS::ApiGateway::RestApi",
        {
            "BinaryMediaTypes": Match.array_with(
                ["image/png", "image/jpeg", "application/dicom", "multipart/form-data", "application/octet-stream"]
            )
        },
    )
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "prod",
            "TracingEnabled": True,
            "AccessLogSetting": Match.object_like({"DestinationArn": Match.any_value()}),
            "MethodSettings": Match.array_with(
                [Match.object_like({"DataTraceEnabled": False, "LoggingLevel": "ERROR"})]
            ),
        },
    )
    paths = {r["Properties"]["PathPart"] for r in template.find_resources("AWS::ApiGateway::Resource").values()}
    for config in function_configs(project_root).values():
        assert (config["model"] in paths) == config.get("triggers", {}).get("http", True), config["model"]
    assert {"predict", "infer", "ready", "versions", "{version}", "uploads", "health", "live"} <= paths
    methods = template.find_resources("AWS::ApiGateway::Method")
    open_methods = [m for m in methods.values() if not m["Properties"].get("ApiKeyRequired")]
    assert len(open_methods) == 2  # /v2/health/live and /v2/health/ready
    posts = [m["Properties"] for m in methods.values() if m["Properties"]["HttpMethod"] == "POST"]
    assert all(p["RequestParameters"]["method.request.header.Content-Type"] for p in posts)
    assert all("RequestValidatorId" in p for p in posts)


def test_tiers_become_usage_plans(template: Template) -> None:
    tiers = tomllib.loads((REPO / "infra" / "tiers.toml").read_text())["tiers"]
    plans = template.find_resources("AWS::ApiGateway::UsagePlan")
    assert len(plans) == len(tiers)
    for name, tier in tiers.items():
        template.has_resource_properties(
            "AWS::ApiGateway::UsagePlan",
            {"UsagePlanName": Match.string_like_regexp(f"-{name}$"),
             "Throttle": {"RateLimit": tier["rate_limit"], "BurstLimit": tier["burst_limit"]},
             "Quota": {"Limit": tier["quota"], "Period": tier["period"]}},
        )  # fmt: skip


def test_upload_pipeline_queues_dlq_and_table(template: Template, project_root: Path) -> None:
    uploaders = [n for n, c in function_configs(project_root).items() if c.get("triggers", {}).get("uploads")]
    assert uploaders
    redriven = template.find_resources("AWS::SQS::Queue", {"Properties": {"RedrivePolicy": {"maxReceiveCount": 3}}})
    assert len(redriven) == len(uploaders)
    assert all("KmsMasterKeyId" in q["Properties"] for q in template.find_resources("AWS::SQS::Queue").values())
    mappings = template.find_resources("AWS::Lambda::EventSourceMapping")
    assert len(mappings) == len(uploaders)
    assert all(m["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for m in mappings.values())
    [notifications] = template.find_resources("Custom::S3BucketNotifications").values()
    prefixes = json.dumps(notifications["Properties"]["NotificationConfiguration"])
    assert all(f'"{name}/"' in prefixes for name in uploaders)
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
         "SSESpecification": Match.object_like({"SSEEnabled": True, "SSEType": "KMS"}),
         "BillingMode": "PAY_PER_REQUEST"},
    )  # fmt: skip


def test_security_review_nag_and_cfn_lint(project_root: Path, tmp_path: Path) -> None:
    """The dedicated check: cdk-nag AwsSolutions + HIPAA.Security on, then cfn-lint on the template."""
    from tests.infra.security_review import review

    assert review(project_root, tmp_path)  # every acknowledgement: one resource, a rule, a reason


def test_a_container_function_builds_the_shared_lambda_image(template: Template, assembly_dir: Path) -> None:
    """No Dockerfile of its own: containers/lambda.Dockerfile, FUNCTION=<name>, a context of
    that function, its model and medfn alone (synthesized only: `cdk deploy` builds it)."""
    outdir = assembly_dir
    manifest = json.loads((outdir / "medfn.assets.json").read_text())
    [image] = [
        i["source"]
        for i in manifest["dockerImages"].values()
        if i["source"].get("dockerBuildArgs", {}).get("FUNCTION") == SERIES
    ]
    assert image["dockerFile"] == "containers/lambda.Dockerfile"
    assert image["platform"] == "linux/amd64"  # architecture = "x86_64" in its function.toml
    context = outdir / image["directory"]
    staged = {str(p.relative_to(context)) for p in context.rglob("*") if p.is_file()}
    assert {
        "containers/lambda.Dockerfile",
        f"functions/{SERIES}/function.toml",
        f"model_store/{SERIES}/model.toml",
    } <= staged
    assert not any(p.startswith(("functions/scan_classifier", "model_store/scan_classifier", "dist")) for p in staged)


def series_table(template: Template) -> tuple[str, dict]:
    [(logical, table)] = [(k, v) for k, v in template.find_resources("AWS::DynamoDB::Table").items()
                          if k.startswith("StorageSeriesTable")]  # fmt: skip
    return logical, table


def test_the_series_table(template: Template) -> None:
    logical, table = series_table(template)
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "series", "KeyType": "HASH"},
                                  {"AttributeName": "item", "KeyType": "RANGE"}]  # fmt: skip
    assert {(a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]} == {
        ("series", "S"), ("item", "S")
    }  # fmt: skip
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"]["SSEType"] == "KMS"
    assert props["SSESpecification"]["KMSMasterKeyId"]["Fn::GetAtt"][0].startswith("StorageKey")  # the data key
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["DeletionProtectionEnabled"] is True and table["DeletionPolicy"] == "Retain"
    assert template.to_json()["Outputs"]["SeriesTable"]["Value"] == {"Ref": logical}


def test_a_series_function_is_told_its_table_settle_time_and_queue(template: Template, project_root: Path) -> None:
    from medfn_infra.storage import RETENTION

    table, _ = series_table(template)
    resources = template.to_json()["Resources"]
    configs = function_configs(project_root)
    series = {n: c for n, c in configs.items() if "series" in c}
    assert SERIES in series
    for name, config in configs.items():
        props = function_of(template, name)
        env = props["Environment"]["Variables"]
        if name not in series:
            assert not any(k.startswith("MEDFN_SERIES_") for k in env), name
            continue
        key = logical_prefix(name).removesuffix("Function")
        [queue] = [k for k, v in resources.items() if k.startswith(f"{key}Uploads") and v["Type"] == "AWS::SQS::Queue"]
        assert env["MEDFN_SERIES_TABLE"] == {"Ref": table}
        assert float(env["MEDFN_SERIES_SETTLE_S"]) == config["series"].get("settle_s", 30)
        assert env["MEDFN_SERIES_QUEUE_URL"] == {"Ref": queue}  # its own upload queue: Ref is the URL
        assert env["MEDFN_SERIES_RETENTION_DAYS"] == str(RETENTION["series_records"])
        assert env["MEDFN_STATUS_TABLE"] and env["MEDFN_RESULTS_BUCKET"]  # and everything a pipeline function gets
        assert props["MemorySize"] == config.get("memory_mb", 1024) and props["Timeout"] == config.get("timeout_s", 30)
        # SQS: the visibility timeout at least six times the function's timeout
        assert resources[queue]["Properties"]["VisibilityTimeout"] >= 6 * props["Timeout"]


def test_series_records_are_limited_to_each_functions_own_keys(template: Template, project_root: Path) -> None:
    table, _ = series_table(template)
    series = [n for n, c in function_configs(project_root).items() if "series" in c]
    on_table = {}
    for policy in template.find_resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if f'"{table}"' in json.dumps(statement.get("Resource")):
                on_table[json.dumps(policy["Properties"]["Roles"])] = statement
    assert len(on_table) == len(series)  # the series functions' roles alone, one statement each
    for name in series:
        [statement] = [s for roles, s in on_table.items() if f'"{logical_prefix(name)}Role' in roles]
        assert sorted(statement["Action"]) == [
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
        ]
        assert statement["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{name}/*"]}}


def test_series_needs_uploads(project_root: Path, tmp_path: Path) -> None:
    from medfn_infra.project import load_project

    shutil.copytree(project_root / "functions", tmp_path / "functions")
    toml = tmp_path / "functions" / SERIES / "function.toml"
    toml.write_text(toml.read_text().replace("uploads = true", "uploads = false"))
    with pytest.raises(ValueError, match=r"\[series\] needs uploads = true"):
        load_project(
            tmp_path / "functions", project_root / "model_store", project_root / "dist", staging=tmp_path / "platform"
        )
