"""The GPU service stack: a function with `accelerator = "gpu"` gets ECS on GPU instances, an
internal NLB and VPC-link routes on the REST API; cdk-nag and cfn-lint stay clean.

No shipped function is GPU, so the project here is built on the fly: a copy of scan_segmenter
turned into a GPU container function, beside one ordinary Lambda function. Nothing runs Docker:
the image is synthesized as an asset and only `cdk deploy` would build it.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("aws_cdk", reason="the infra extra (aws-cdk-lib) is not installed")
sys.path.insert(0, str(REPO / "infra"))

from aws_cdk.assertions import Match, Template  # noqa: E402

GPU = "scan_segmenter_gpu"  # scan_segmenter's copy, served by the GPU service
LAMBDA = "breast_mass"  # stays on Lambda beside it


def gpu_project(root: Path) -> Path:
    shutil.copytree(REPO / "containers", root / "containers")  # the image asset's Dockerfile
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, root / name)
    for model in ("scan_segmenter", LAMBDA):
        shutil.copytree(REPO / "model_store" / model, root / "model_store" / model)
    shutil.copytree(
        REPO / "functions" / LAMBDA, root / "functions" / LAMBDA, ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "dist").mkdir()
    with zipfile.ZipFile(root / "dist" / f"{LAMBDA}-arm64.zip", "w") as archive:
        archive.writestr("handler.py", "handler = None\n")
    gpu = root / "functions" / GPU
    shutil.copytree(REPO / "functions" / "scan_segmenter", gpu, ignore=shutil.ignore_patterns("__pycache__"))
    toml = (gpu / "function.toml").read_text()
    for key, value in (
        ("name", f'"{GPU}"'),
        ("runtime", '"container"'),
        ("accelerator", '"gpu"'),
        ("uploads", "false"),
    ):
        toml, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", toml)
        assert count == 1, key
    (gpu / "function.toml").write_text(toml)
    return root


@pytest.fixture(scope="module")
def project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gpu_project(tmp_path_factory.mktemp("gpu_project"))


@pytest.fixture(scope="module")
def synthesized(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Template, Path]:
    from medfn_infra.app import build_app

    outdir = tmp_path_factory.mktemp("cdk.out")
    [stack] = build_app(outdir, repo=project_root, nag=False).synth().stacks
    return Template.from_json(stack.template), outdir


@pytest.fixture(scope="module")
def template(synthesized: tuple[Template, Path]) -> Template:
    return synthesized[0]


def test_gpu_hosts_are_g6_instances_of_the_ecs_gpu_ami(template: Template) -> None:
    [launch] = template.find_resources("AWS::EC2::LaunchTemplate").values()
    data = launch["Properties"]["LaunchTemplateData"]
    assert data["InstanceType"] == "g6.xlarge"
    assert "gpu" in json.dumps(data["ImageId"])  # the SSM parameter of the ECS GPU-optimized AMI
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert all(d["Ebs"]["Encrypted"] for d in data["BlockDeviceMappings"])
    template.has_resource_properties("AWS::AutoScaling::AutoScalingGroup", {"MinSize": "0", "MaxSize": "2"})
    template.has_resource_properties(
        "AWS::ECS::CapacityProvider",
        {"AutoScalingGroupProvider": Match.object_like({"ManagedScaling": Match.object_like({"Status": "ENABLED"})})},
    )


def test_task_takes_one_gpu_reads_its_model_from_the_bucket_and_logs_with_kms(template: Template) -> None:
    [task] = template.find_resources("AWS::ECS::TaskDefinition").values()
    [container] = task["Properties"]["ContainerDefinitions"]
    assert container["ResourceRequirements"] == [{"Type": "GPU", "Value": "1"}]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert "/models" in json.dumps(env["MEDFN_MODEL_STORE"]) and "s3://" in json.dumps(env["MEDFN_MODEL_STORE"])
    assert env["MEDFN_MODEL_VERSION"] == "1" and len(env["MEDFN_MODEL_SHA256"]) == 64
    assert env["MEDFN_REQUIRE_CUDA"] == "1"
    assert "/v2/health/ready" in " ".join(container["HealthCheck"]["Command"])
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert task["Properties"]["NetworkMode"] == "awsvpc"
    # the task role reads scan_segmenter's prefix and nothing else of the bucket
    policies = json.dumps(
        [
            p
            for p in template.find_resources("AWS::IAM::Policy").values()
            if "ScanSegmenterGpuTaskRole" in json.dumps(p["Properties"]["Roles"])
        ]
    )
    assert "/models/scan_segmenter/*" in policies and policies.count("/models/") == 1
    template.has_resource_properties("AWS::ECS::Service", {"DesiredCount": 1, "LaunchType": Match.absent(),
                                                           "HealthCheckGracePeriodSeconds": 300})  # fmt: skip


def test_internal_nlb_checks_readiness_and_the_vpc_has_flow_logs(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::LoadBalancer", {"Type": "network", "Scheme": "internal"}
    )
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {"TargetType": "ip", "Port": 8080, "HealthCheckProtocol": "HTTP", "HealthCheckPath": "/v2/health/ready"},
    )
    template.resource_count_is("AWS::EC2::VPC", 1)
    template.resource_count_is("AWS::EC2::NatGateway", 1)
    template.has_resource_properties(
        "AWS::EC2::FlowLog", {"TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"}
    )
    template.has_resource_properties("AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway"})


def test_gpu_routes_go_over_the_vpc_link_and_want_an_api_key(template: Template) -> None:
    [link_id] = template.find_resources("AWS::ApiGateway::VpcLink")
    over_link = [m["Properties"] for m in template.find_resources("AWS::ApiGateway::Method").values()
                 if m["Properties"]["Integration"].get("ConnectionType") == "VPC_LINK"]  # fmt: skip
    assert len(over_link) == 7  # predict, and model, ready, infer with and without /versions/{version}
    for method in over_link:
        integration = method["Integration"]
        assert method["ApiKeyRequired"] is True
        assert integration["Type"] == "HTTP_PROXY" and integration["IntegrationHttpMethod"] == method["HttpMethod"]
        assert integration["ConnectionId"] == {"Ref": link_id}
    uris = json.dumps([m["Integration"]["Uri"] for m in over_link])
    assert ":8001/v1/models/scan_segmenter/predict" in uris
    assert ":8001/v2/models/scan_segmenter/versions/{version}/infer" in uris
    versioned = [m for m in over_link if "{version}" in json.dumps(m["Integration"]["Uri"])]
    assert all(
        m["Integration"]["RequestParameters"] == {"integration.request.path.version": "method.request.path.version"}
        for m in versioned
    )
    # usage plans cover the stage every route is on, so GPU calls count against each tier
    for plan in template.find_resources("AWS::ApiGateway::UsagePlan").values():
        assert plan["Properties"]["ApiStages"][0]["Stage"]


def test_lambda_functions_stay_on_lambda_beside_it(template: Template) -> None:
    ours = template.find_resources(
        "AWS::Lambda::Function",
        {"Properties": {"Environment": {"Variables": {"MEDFN_MODEL_SHA256": Match.any_value()}}}},
    )
    assert len(ours) == 1
    assert "BreastMass" in next(iter(ours))


def test_image_asset_is_synthesized_without_docker(synthesized: tuple[Template, Path]) -> None:
    _, outdir = synthesized
    manifest = json.loads((outdir / "medfn.assets.json").read_text())
    [image] = manifest["dockerImages"].values()
    source = image["source"]
    assert source["dockerFile"] == "containers/gpu.Dockerfile"
    assert source["dockerBuildArgs"]["FUNCTION"] == GPU and "aws" in source["dockerBuildArgs"]["EXTRAS"]
    assert source["platform"] == "linux/amd64"
    context = outdir / source["directory"]
    staged = {str(p.relative_to(context)) for p in context.rglob("*") if p.is_file()}
    assert {
        "containers/gpu.Dockerfile",
        f"functions/{GPU}/function.toml",
        "model_store/scan_segmenter/model.toml",
    } <= staged
    assert not any(p.startswith((f"functions/{LAMBDA}", f"model_store/{LAMBDA}", "dist")) for p in staged)


def test_security_review_nag_and_cfn_lint(project_root: Path, tmp_path: Path) -> None:
    from tests.infra.security_review import review

    acknowledged = review(project_root, tmp_path)
    assert any("/GpuService/" in path for path, _, _ in acknowledged)


def test_no_gpu_function_means_no_vpc_nat_or_cluster(project_root: Path, tmp_path: Path) -> None:
    from medfn_infra.app import build_app

    lambda_only = tmp_path / "project"
    shutil.copytree(project_root, lambda_only, ignore=shutil.ignore_patterns(GPU))
    [stack] = build_app(tmp_path / "cdk.out", repo=lambda_only, nag=False).synth().stacks
    resources = {r["Type"] for r in stack.template["Resources"].values()}
    assert not resources & {"AWS::EC2::VPC", "AWS::EC2::NatGateway", "AWS::ECS::Cluster", "AWS::ApiGateway::VpcLink"}
    assert "AWS::Lambda::Function" in resources


def test_a_gpu_function_cannot_take_uploads(project_root: Path, tmp_path: Path) -> None:
    from medfn_infra.project import load_project

    shutil.copytree(project_root / "functions", tmp_path / "functions")
    toml = tmp_path / "functions" / GPU / "function.toml"
    toml.write_text(toml.read_text().replace("uploads = false", "uploads = true"))
    with pytest.raises(ValueError, match="uploads = true needs a Lambda function"):
        load_project(
            tmp_path / "functions", project_root / "model_store", project_root / "dist", staging=tmp_path / "platform"
        )
