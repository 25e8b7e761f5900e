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
import subprocess
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
# What a GPU service needs at synth (there is no plaintext or open-egress fallback).
GPU_CONTEXT: dict[str, object] = {
    "medfn:gpu_certificate_arn": "arn:aws:acm:us-east-1:111122223333:certificate/0000-example",
    "medfn:gpu_domain": "gpu.medfn.example.com",
    "medfn:gpu_s3_prefix_list": "pl-63a5400a",
}


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
    [stack] = build_app(outdir, repo=project_root, nag=False, context=GPU_CONTEXT).synth().stacks
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
        {"TargetType": "ip", "Port": 8080, "HealthCheckProtocol": "HTTPS", "HealthCheckPath": "/v2/health/ready"},
    )
    template.resource_count_is("AWS::EC2::VPC", 1)
    template.has_resource_properties(
        "AWS::EC2::FlowLog", {"TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"}
    )


def test_the_vpc_has_no_way_out_but_its_endpoints(template: Template) -> None:
    resources = template.to_json()["Resources"]
    kinds = {v["Type"] for v in resources.values()}
    assert not kinds & {"AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::EIP",
                        "AWS::EC2::EgressOnlyInternetGateway", "AWS::EC2::VPCGatewayAttachment"}  # fmt: skip
    for subnet in template.find_resources("AWS::EC2::Subnet").values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False
    # every route is the S3 gateway endpoint's (the local route is implicit): no default route anywhere
    assert not template.find_resources("AWS::EC2::Route")
    endpoints = [v["Properties"] for v in template.find_resources("AWS::EC2::VPCEndpoint").values()]
    # com.amazonaws.<region>.<service>, the region a token: {"Fn::Join": ["", [..., ".<service>"]]}
    services = sorted(e["ServiceName"]["Fn::Join"][1][-1].lstrip(".") for e in endpoints
                      if e.get("VpcEndpointType") == "Interface")  # fmt: skip
    assert services == ["ecr.api", "ecr.dkr", "ecs", "ecs-agent", "ecs-telemetry", "logs"], services
    gateway = [e for e in endpoints if e.get("VpcEndpointType") == "Gateway"]
    assert len(gateway) == 1 and ".s3" in json.dumps(gateway[0]["ServiceName"])
    interface = [e for e in endpoints if e.get("VpcEndpointType") == "Interface"]
    assert len(interface) == 6 and all(e["PrivateDnsEnabled"] is True for e in interface)
    [group] = {json.dumps(e["SecurityGroupIds"]) for e in interface}  # one group, below
    assert "EndpointSecurity" in group


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
    assert "gpu_serve_tls.py" in (REPO / "containers" / "gpu.Dockerfile").read_text().split("\nCMD ")[-1]
    assert source["dockerBuildArgs"]["FUNCTION"] == GPU and "aws" in source["dockerBuildArgs"]["EXTRAS"]
    assert source["platform"] == "linux/amd64"
    context = outdir / source["directory"]
    staged = {str(p.relative_to(context)) for p in context.rglob("*") if p.is_file()}
    assert {
        "containers/gpu.Dockerfile",
        "containers/gpu_serve_tls.py",  # the start command: medfn serve over HTTPS
        f"functions/{GPU}/function.toml",
        "model_store/scan_segmenter/model.toml",
    } <= staged
    assert not any(p.startswith((f"functions/{LAMBDA}", f"model_store/{LAMBDA}", "dist")) for p in staged)


def test_security_review_nag_and_cfn_lint(project_root: Path, tmp_path: Path) -> None:
    from tests.infra.security_review import review

    acknowledged = review(project_root, tmp_path, GPU_CONTEXT)
    assert any("/GpuService/" in path for path, _, _ in acknowledged)
    rules = {rule for _, rule, _ in acknowledged}
    # TLS listeners need no certificate acknowledgement, their access logs are on, and no subnet routes to an IGW
    assert not rules & {"HIPAA.Security-ELBv2ACMCertificateRequired", "AwsSolutions-ELB2",
                        "HIPAA.Security-ELBLoggingEnabled", "HIPAA.Security-VPCNoUnrestrictedRouteToIGW"}  # fmt: skip


@pytest.mark.parametrize("missing", sorted(GPU_CONTEXT))
def test_a_gpu_function_without_its_tls_and_endpoint_settings_is_refused(project_root: Path, tmp_path: Path, missing):
    """Never a plaintext listener or an open egress rule in their place: synth stops and says what to give."""
    from medfn_infra.app import build_app

    context = {k: v for k, v in GPU_CONTEXT.items() if k != missing}
    variable = "MEDFN_" + missing.removeprefix("medfn:").upper()
    if missing in ("medfn:gpu_certificate_arn", "medfn:gpu_domain"):  # settings.py refuses one without the other
        context = {k: v for k, v in context.items() if k not in ("medfn:gpu_certificate_arn", "medfn:gpu_domain")}
    with pytest.raises(ValueError, match=variable) as refused:
        build_app(tmp_path, repo=project_root, nag=False, context=context)
    assert GPU in str(refused.value) and "docs/deploy.md" in str(refused.value)


def test_no_gpu_function_means_no_vpc_nat_or_cluster(project_root: Path, tmp_path: Path) -> None:
    from medfn_infra.app import build_app

    lambda_only = tmp_path / "project"
    shutil.copytree(project_root, lambda_only, ignore=shutil.ignore_patterns(GPU))
    # and needs none of the GPU settings
    [stack] = build_app(tmp_path / "cdk.out", repo=lambda_only, nag=False).synth().stacks
    resources = {r["Type"] for r in stack.template["Resources"].values()}
    assert not resources & {"AWS::EC2::VPC", "AWS::EC2::NatGateway", "AWS::ECS::Cluster", "AWS::ApiGateway::VpcLink"}
    assert "AWS::Lambda::Function" in resources


def test_gpu_log_groups_are_declared_and_hosts_cannot_write_logs(template: Template) -> None:
    from tests.infra.test_retention import assert_logs_declared

    raw = template.to_json()
    assert_logs_declared(raw)  # flow logs, task logs, Container Insights, the default-SG helper
    names = json.dumps([v["Properties"].get("LogGroupName") for v in raw["Resources"].values()])
    assert "/aws/ecs/containerinsights/" in names
    [host_policy] = [v for k, v in raw["Resources"].items() if k.startswith("GpuServiceHostRoleDefaultPolicy")]
    actions = json.dumps([s["Action"] for s in host_policy["Properties"]["PolicyDocument"]["Statement"]])
    assert "logs:" not in actions and "ecs:RegisterContainerInstance" in actions


def security_groups(template: Template) -> dict[str, dict]:
    """Each group's rules, inline or standalone: {group logical id: {"in": [...], "out": [...]}}."""
    raw = template.to_json()["Resources"]
    groups = {k: {"in": [], "out": []} for k, v in raw.items() if v["Type"] == "AWS::EC2::SecurityGroup"}
    for logical, resource in raw.items():
        props = resource["Properties"]
        if resource["Type"] == "AWS::EC2::SecurityGroup":
            groups[logical]["in"] += props.get("SecurityGroupIngress", [])
            groups[logical]["out"] += props.get("SecurityGroupEgress", [])
        elif resource["Type"] in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress"):
            side = "in" if resource["Type"].endswith("Ingress") else "out"
            groups[props["GroupId"]["Fn::GetAtt"][0]][side].append(props)
    return groups


def test_security_groups_admit_only_the_vpc_link_path_and_let_out_only_to_endpoints(template: Template) -> None:
    groups = security_groups(template)
    [balancer] = [k for k in groups if k.startswith("GpuServiceBalancerSecurity")]
    [task] = [k for k in groups if k.startswith("GpuServiceScanSegmenterGpuSecurity")]
    [host] = [k for k in groups if k.startswith("GpuServiceHostSecurity")]
    [endpoints] = [k for k in groups if k.startswith("GpuServiceEndpointSecurity")]
    assert set(groups) == {balancer, task, host, endpoints}  # no other group (the default one is emptied)
    [(_, nlb)] = template.find_resources("AWS::ElasticLoadBalancingV2::LoadBalancer").items()
    assert nlb["Properties"]["SecurityGroups"] == [{"Fn::GetAtt": [balancer, "GroupId"]}]
    # PrivateLink (the VPC link) is exempt from inbound rules, and there are none: nothing else gets in
    assert nlb["Properties"]["EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic"] == "off"
    assert groups[balancer]["in"] == []
    [out] = groups[balancer]["out"]
    assert out["DestinationSecurityGroupId"] == {"Fn::GetAtt": [task, "GroupId"]} and out["FromPort"] == 8080
    # the task: in from the NLB's group on its port, out to S3's prefix list on 443 only
    [into] = groups[task]["in"]
    assert into["SourceSecurityGroupId"] == {"Fn::GetAtt": [balancer, "GroupId"]}
    assert (into["FromPort"], into["ToPort"]) == (8080, 8080)
    [out] = groups[task]["out"]
    assert (out["IpProtocol"], out["FromPort"], out["ToPort"], out["DestinationPrefixListId"]) == (
        "tcp", 443, 443, GPU_CONTEXT["medfn:gpu_s3_prefix_list"]
    )  # fmt: skip
    # the hosts: nothing in; out on 443 to the interface endpoints' group and S3's prefix list alone
    assert groups[host]["in"] == []
    assert sorted(json.dumps(r.get("DestinationSecurityGroupId") or r.get("DestinationPrefixListId"))
                  for r in groups[host]["out"] if (r["FromPort"], r["ToPort"]) == (443, 443)) == sorted(
        [json.dumps({"Fn::GetAtt": [endpoints, "GroupId"]}), json.dumps(GPU_CONTEXT["medfn:gpu_s3_prefix_list"])]
    )  # fmt: skip
    assert len(groups[host]["out"]) == 2
    # the endpoints: in from the hosts' group on 443 alone (not the VPC's range), nothing out
    [into] = groups[endpoints]["in"]
    assert into["SourceSecurityGroupId"] == {"Fn::GetAtt": [host, "GroupId"]} and into["FromPort"] == 443
    assert all(r.get("CidrIp") == "255.255.255.255/32" for r in groups[endpoints]["out"])  # CDK's "no egress" rule
    assert "0.0.0.0/0" not in json.dumps(groups) and "10.80.0.0" not in json.dumps(groups)


def test_tls_from_api_gateway_to_the_nlb_and_from_the_nlb_to_the_task(template: Template) -> None:
    [listener] = template.find_resources("AWS::ElasticLoadBalancingV2::Listener").values()
    assert listener["Properties"]["Protocol"] == "TLS" and listener["Properties"]["Port"] == 8001
    assert listener["Properties"]["Certificates"] == [{"CertificateArn": GPU_CONTEXT["medfn:gpu_certificate_arn"]}]
    assert listener["Properties"]["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    # the NLB re-encrypts to the task (it does not validate the task's self-signed certificate)
    [targets] = template.find_resources("AWS::ElasticLoadBalancingV2::TargetGroup").values()
    assert targets["Properties"]["Protocol"] == "TLS" and targets["Properties"]["HealthCheckProtocol"] == "HTTPS"
    # API Gateway calls https://<the certificate's name>: it checks the NLB's certificate against it
    methods = template.find_resources("AWS::ApiGateway::Method").values()
    uris = [m["Properties"]["Integration"]["Uri"] for m in methods
            if m["Properties"]["Integration"].get("ConnectionType") == "VPC_LINK"]  # fmt: skip
    assert uris and all(u.startswith("https://gpu.medfn.example.com:8001/") for u in uris)
    assert all("TlsConfig" not in m["Properties"]["Integration"] for m in methods)  # verification stays on
    [nlb] = template.find_resources("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    attributes = {a["Key"]: a["Value"] for a in nlb["Properties"]["LoadBalancerAttributes"]}
    assert attributes["access_logs.s3.enabled"] == "true" and attributes["access_logs.s3.prefix"] == "gpu-nlb"
    # the container's own health check speaks HTTPS and verifies the certificate its task made
    [task] = template.find_resources("AWS::ECS::TaskDefinition").values()
    [container] = task["Properties"]["ContainerDefinitions"]
    check = " ".join(container["HealthCheck"]["Command"])
    assert "https://127.0.0.1:8080/v2/health/ready" in check and "cafile='/srv/.medfn/tls/cert.pem'" in check
    integrations = json.dumps([m["Properties"]["Integration"] for m in methods])
    assert "http://" not in integrations and "http://" not in json.dumps(container)


def test_the_task_makes_a_private_key_and_a_certificate_its_health_check_can_verify(tmp_path: Path) -> None:
    import importlib.util
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("no openssl command here (the GPU image installs it)")
    spec = importlib.util.spec_from_file_location("gpu_serve_tls", REPO / "containers" / "gpu_serve_tls.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    key, certificate = module.make_certificate(tmp_path / "tls")
    assert key.stat().st_mode & 0o077 == 0  # the key: this user's alone
    context = ssl.create_default_context(cafile=str(certificate))  # what the health check loads
    context.load_cert_chain(str(certificate), str(key))  # what uvicorn loads
    names = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(certificate)],
                           check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert "IP Address:127.0.0.1" in names
