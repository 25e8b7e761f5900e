"""GPU scan workers: a GPU function that takes uploads gets `medfn work` on ECS GPU instances,
scaled on its queue's depth from zero; its task role may make exactly the calls the Lambda
consumer's may (the IAM evaluator, on the same CALLS); cdk-nag and cfn-lint stay clean.

The project: ct_nodule_volume as the repository has it but for `accelerator = "gpu"` (uploads, a
[series], no HTTP routes: the committed function.toml stays on CPU, this is the variant it
documents), scan_classifier on a GPU with its HTTP routes and uploads both (a server and a
worker), and breast_mass on Lambda beside them.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

pytest.importorskip("aws_cdk", reason="the infra extra (aws-cdk-lib) is not installed")
sys.path.insert(0, str(REPO / "infra"))

from aws_cdk.assertions import Template  # noqa: E402

from tests.infra.iam import Policies  # noqa: E402
from tests.infra.test_gpu_service import GPU_CONTEXT  # noqa: E402
from tests.infra.test_permissions import CALLS, NOT_GRANTED, Deployed, expand  # noqa: E402

SERIES, BOTH, LAMBDA = "ct_nodule_volume", "scan_classifier", "breast_mass"
WORKERS_CONTEXT = {**GPU_CONTEXT, "medfn:gpu_dynamodb_prefix_list": "pl-02cd2c6b"}


def as_gpu(toml: Path) -> None:
    text, count = re.subn(r'(?m)^accelerator = "cpu".*$', 'accelerator = "gpu"', toml.read_text())
    assert count == 1
    text = re.sub(r'(?m)^runtime = "zip".*$', 'runtime = "container"', text)
    toml.write_text(text)


def workers_project(root: Path, functions: tuple[str, ...] = (SERIES, BOTH, LAMBDA)) -> Path:
    shutil.copytree(REPO / "containers", root / "containers")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, root / name)
    (root / "dist").mkdir()
    for name in functions:
        shutil.copytree(
            REPO / "functions" / name, root / "functions" / name, ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copytree(REPO / "model_store" / name, root / "model_store" / name)
        if name != LAMBDA:
            as_gpu(root / "functions" / name / "function.toml")
    with zipfile.ZipFile(root / "dist" / f"{LAMBDA}-arm64.zip", "w") as archive:
        archive.writestr("handler.py", "handler = None\n")
    return root


@pytest.fixture(scope="module")
def project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return workers_project(tmp_path_factory.mktemp("gpu_workers"))


@pytest.fixture(scope="module")
def template(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Template:
    from medfn_infra.app import build_app

    [stack] = (
        build_app(tmp_path_factory.mktemp("cdk.out"), repo=project_root, nag=False, context=WORKERS_CONTEXT)
        .synth()
        .stacks
    )
    return Template.from_json(stack.template)


def logical(template: Template, kind: str, prefix: str) -> list[str]:
    return [k for k in template.find_resources(kind) if k.startswith(prefix)]


def worker_container(template: Template, fn: str) -> dict[str, Any]:
    [task] = logical(template, "AWS::ECS::TaskDefinition", f"GpuService{fn}WorkerTask")
    [container] = template.to_json()["Resources"][task]["Properties"]["ContainerDefinitions"]
    return dict(container)


def test_each_gpu_upload_function_gets_a_worker_service_that_starts_at_zero(template: Template) -> None:
    services = {k: v["Properties"] for k, v in template.find_resources("AWS::ECS::Service").items()}
    assert sorted(k.split("Service")[1] for k in services) == sorted(
        ["CtNoduleVolumeWorker", "ScanClassifier", "ScanClassifierWorker"]
    )  # a server only where there are HTTP routes
    for logical_id, props in services.items():
        assert props["DesiredCount"] == (0 if "Worker" in logical_id else 1)
    container = worker_container(template, "CtNoduleVolume")
    assert container["Command"][:6] == ["medfn", "work", "--function", SERIES, "--device", "cuda"]
    assert container["ResourceRequirements"] == [{"Type": "GPU", "Value": "1"}] and container["StopTimeout"] == 120
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    [queue] = [k for k in logical(template, "AWS::SQS::Queue", "CtNoduleVolumeUploads") if "DeadLetters" not in k]
    assert env["MEDFN_QUEUE_URL"] == {"Ref": queue} == env["MEDFN_SERIES_QUEUE_URL"]
    assert (
        env["MEDFN_REQUIRE_CUDA"] == "1" and env["MEDFN_MAX_ATTEMPTS"] == "3" and env["MEDFN_SERIES_SETTLE_S"] == "30"
    )
    assert "MEDFN_UPLOAD_BUCKET" not in env  # no HTTP routes, so no STOW-RS
    both = {e["Name"]: e["Value"] for e in worker_container(template, "ScanClassifier")["Environment"]}
    assert "MEDFN_UPLOAD_BUCKET" in both and "MEDFN_SERIES_TABLE" not in both
    # one listener: the function with HTTP routes
    [listener] = template.find_resources("AWS::ElasticLoadBalancingV2::Listener").values()
    assert listener["Properties"]["Port"] == 8001
    # the image runs the pipeline: a Lambda image's extras
    assert not template.find_resources(
        "AWS::Lambda::EventSourceMapping", {"Properties": {"EventSourceArn": {"Fn::GetAtt": [queue, "Arn"]}}}
    )


def test_workers_scale_on_queue_depth_from_zero_and_back(template: Template) -> None:
    targets = [t["Properties"] for t in template.find_resources("AWS::ApplicationAutoScaling::ScalableTarget").values()]
    assert len(targets) == 2 and all((t["MinCapacity"], t["MaxCapacity"]) == (0, 2) for t in targets)
    assert all(t["ScalableDimension"] == "ecs:service:DesiredCount" for t in targets)
    policies = [p["Properties"] for p in template.find_resources("AWS::ApplicationAutoScaling::ScalingPolicy").values()]
    steps = sorted(
        (s["ScalingAdjustment"], s.get("MetricIntervalLowerBound"), s.get("MetricIntervalUpperBound"))
        for p in policies if "GpuServiceCtNoduleVolume" in json.dumps(p["ScalingTargetId"])
        for s in p["StepScalingPolicyConfiguration"]["StepAdjustments"]
    )  # fmt: skip
    assert steps == [(0, None, 0), (1, 0, 49), (2, 49, None)]  # tasks: at depth 0, from 1, from 50
    assert all(p["StepScalingPolicyConfiguration"]["AdjustmentType"] == "ExactCapacity" for p in policies)
    alarms = {k: v["Properties"] for k, v in template.find_resources("AWS::CloudWatch::Alarm").items()
              if k.startswith("GpuServiceCtNoduleVolume")}  # fmt: skip
    [out] = [a for k, a in alarms.items() if "DepthAboveZero" in k]
    [zero] = [a for k, a in alarms.items() if "DepthZero" in k]
    metrics = json.dumps(out["Metrics"])
    for name in ("ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"):  # fmt: skip
        assert name in metrics
    assert (out["Threshold"], out["ComparisonOperator"], out["EvaluationPeriods"]) == (
        1, "GreaterThanOrEqualToThreshold", 1
    )  # fmt: skip
    assert (zero["Threshold"], zero["ComparisonOperator"], zero["TreatMissingData"]) == (
        0, "LessThanOrEqualToThreshold", "breaching"
    )  # fmt: skip
    # instances: from none, started by the capacity provider for each task waiting for a GPU
    template.has_resource_properties("AWS::AutoScaling::AutoScalingGroup", {"MinSize": "0", "MaxSize": "6"})
    [provider] = template.find_resources("AWS::ECS::CapacityProvider").values()
    assert provider["Properties"]["AutoScalingGroupProvider"]["ManagedScaling"]["Status"] == "ENABLED"


def test_a_worker_reaches_s3_dynamodb_and_its_queue_only(template: Template) -> None:
    from tests.infra.test_gpu_service import security_groups

    groups = security_groups(template)
    [worker] = [k for k in groups if k.startswith("GpuServiceCtNoduleVolumeWorkerSecurity")]
    [endpoints] = [k for k in groups if k.startswith("GpuServiceEndpointSecurity")]
    assert groups[worker]["in"] == []
    outs = sorted(json.dumps(r.get("DestinationPrefixListId") or r.get("DestinationSecurityGroupId"))
                  for r in groups[worker]["out"])  # fmt: skip
    assert outs == sorted([json.dumps(WORKERS_CONTEXT["medfn:gpu_s3_prefix_list"]),
                           json.dumps(WORKERS_CONTEXT["medfn:gpu_dynamodb_prefix_list"]),
                           json.dumps({"Fn::GetAtt": [endpoints, "GroupId"]})])  # fmt: skip
    assert all((r["FromPort"], r["ToPort"]) == (443, 443) for r in groups[worker]["out"])
    assert any(r.get("SourceSecurityGroupId") == {"Fn::GetAtt": [worker, "GroupId"]} for r in groups[endpoints]["in"])
    endpoints_made = json.dumps(
        [e["Properties"]["ServiceName"] for e in template.find_resources("AWS::EC2::VPCEndpoint").values()]
    )
    assert ".sqs" in endpoints_made and ".dynamodb" in endpoints_made


def test_the_worker_task_role_may_make_every_call_the_lambda_consumer_makes_and_no_more(
    template: Template, project_root: Path
) -> None:
    raw = template.to_json()
    policies = Policies(raw)
    resources = raw["Resources"]

    def one(prefix: str, kind: str) -> str:
        [found] = [k for k, v in resources.items() if k.startswith(prefix) and v["Type"] == kind]
        return found

    def arn(prefix: str, kind: str) -> str:
        return str(policies.resolver.attribute(one(prefix, kind), "Arn"))

    queues = {name: arn(f"{''.join(p.capitalize() for p in name.split('_'))}Uploads", "AWS::SQS::Queue")
              for name in (SERIES, BOTH)}  # fmt: skip
    shared = {
        "models": arn("StorageModels", "AWS::S3::Bucket"), "uploads": arn("StorageUploads", "AWS::S3::Bucket"),
        "results": arn("StorageResults", "AWS::S3::Bucket"), "table": arn("StorageStatusTable", "AWS::DynamoDB::Table"),
        "series_table": arn("StorageSeriesTable", "AWS::DynamoDB::Table"),
        "model_key": arn("StorageModelKey", "AWS::KMS::Key"), "data_key": arn("StorageKey", "AWS::KMS::Key"),
        "queue_key": arn("StorageQueueKey", "AWS::KMS::Key"),
        "secret": "arn:aws:secretsmanager:us-east-1:111122223333:secret:medfn/pacs-AbC123",
        "other_secret": "arn:aws:secretsmanager:us-east-1:111122223333:secret:medfn/other-XyZ789",
        "secret_key": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    }  # fmt: skip
    missing, extra, checked = [], [], 0
    for name, other, kinds in (
        (SERIES, BOTH, {"model", "pipeline", "series", "no_stow", "no_destination"}),
        (BOTH, SERIES, {"model", "pipeline", "no_series", "stow", "no_destination"}),
    ):
        fn = "".join(p.capitalize() for p in name.split("_"))
        env = {e["Name"]: e["Value"] for e in worker_container(template, fn)["Environment"]}
        values = dict(shared, function=name, model=name, version=env["MEDFN_MODEL_VERSION"], other_model=other,
                      other_function=other, queue=queues[name], other_queue=queues[other])  # fmt: skip
        role = one(f"GpuService{fn}WorkerTaskRole", "AWS::IAM::Role")
        worker = Deployed(name, kinds, role, values, env["MEDFN_QUARANTINE_MODE"])
        for call in CALLS:  # the Lambda runtime's own ("any": logs, X-Ray, its DLQ) are not the task's
            if call.who in kinds and call.mode in (None, worker.mode):
                for resource, context in expand(call, worker, project_root):
                    checked += 1
                    if policies.decision(role, call.action, resource, context) != "allowed":
                        missing.append(f"{name}: {call.action} on {resource} {context or ''} ({call.where})")
        for call in NOT_GRANTED:
            if call.who in kinds | {"any"} and call.mode in (None, worker.mode):
                for resource, context in expand(call, worker, project_root):
                    if policies.allows(role, call.action, resource, context):
                        extra.append(f"{name}: {call.action} on {resource} {context or ''} {call.where}")
    assert not missing, "calls the worker makes that its task role may not:\n" + "\n".join(missing)
    assert not extra, "granted to the worker but never called:\n" + "\n".join(extra)
    assert checked > 60


def test_alarms_watch_each_workers_dead_letters_and_backlog(template: Template) -> None:
    names = json.dumps([a["Properties"]["AlarmName"] for a in template.find_resources("AWS::CloudWatch::Alarm").values()
                        if "AlarmName" in a["Properties"]])  # fmt: skip
    for name in (SERIES, BOTH):
        assert f"{name}-upload-dead-letters" in names and f"{name}-upload-queue-age" in names


def test_security_review_nag_and_cfn_lint(project_root: Path, tmp_path: Path) -> None:
    from tests.infra.security_review import review

    acknowledged = review(project_root, tmp_path, WORKERS_CONTEXT)
    assert any("WorkerTaskRole" in path for path, _, _ in acknowledged)


def test_an_upload_only_gpu_function_needs_no_load_balancer_or_certificate(tmp_path: Path) -> None:
    from medfn_infra.app import build_app

    root = workers_project(tmp_path / "project", (SERIES, LAMBDA))
    context = {k: v for k, v in WORKERS_CONTEXT.items() if k not in ("medfn:gpu_certificate_arn", "medfn:gpu_domain")}
    [stack] = build_app(tmp_path / "cdk.out", repo=root, nag=False, context=context).synth().stacks
    kinds = {r["Type"] for r in stack.template["Resources"].values()}
    assert "AWS::ECS::Service" in kinds
    assert not kinds & {"AWS::ElasticLoadBalancingV2::LoadBalancer", "AWS::ApiGateway::VpcLink"}
    without = {k: v for k, v in context.items() if k != "medfn:gpu_dynamodb_prefix_list"}
    with pytest.raises(ValueError, match="MEDFN_GPU_DYNAMODB_PREFIX_LIST"):
        build_app(tmp_path / "cdk.out2", repo=root, nag=False, context=without)
