"""The REST API's front door: who may call (IAM by default, Cognito or keys alone by choice),
health routes that reach no busy function, a throttled stage and a WAF with per-IP rates."""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from tests.conftest import REPO
from tests.infra.stack_project import function_id, lambdas

USER_POOL = "arn:aws:cognito-idp:us-east-1:111122223333:userpool/us-east-1_Example"


def variant(project_root: Path, outdir: Path, **context: Any) -> Template:
    from medfn_infra.app import build_app

    app = build_app(outdir, repo=project_root, nag=False, context={f"medfn:{k}": v for k, v in context.items()})
    [stack] = app.synth().stacks
    return Template.from_json(stack.template)


def methods(template: Template) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in template.find_resources("AWS::ApiGateway::Method").items()}


def health_methods(template: Template) -> dict[str, dict[str, Any]]:
    return {k: m for k, m in methods(template).items() if "v2health" in k}


def top_tier() -> dict[str, Any]:
    tiers = tomllib.loads((REPO / "infra" / "tiers.toml").read_text())["tiers"]
    return max(tiers.values(), key=lambda t: t["rate_limit"])


def test_health_live_is_a_mock_and_ready_runs_on_its_own_small_function(template: Template) -> None:
    found = health_methods(template)
    assert len(found) == 2
    [live] = [m for k, m in found.items() if "live" in k]
    [ready] = [m for k, m in found.items() if "ready" in k]
    for method in (live, ready):
        assert method["AuthorizationType"] == "NONE" and method["ApiKeyRequired"] is False
    assert live["Integration"]["Type"] == "MOCK"
    assert json.loads(live["Integration"]["IntegrationResponses"][0]["ResponseTemplates"]["application/json"]) == {
        "live": True
    }
    health = function_id(template, "health")
    assert "HealthFunctionLive" in json.dumps(ready["Integration"]["Uri"])
    props = lambdas(template)[health]
    assert props["Handler"] == "handler.ready" and props["ReservedConcurrentExecutions"] == 2
    assert set(props["Environment"]["Variables"]) == {"MEDFN_MODEL_STORE", "MEDFN_CATALOG"}
    # nothing else reaches the readiness function, and no health route reaches the platform
    routed = [m for m in methods(template).values() if "HealthFunctionLive" in json.dumps(m["Integration"])]
    assert routed == [ready]
    assert not any("PlatformFunction" in json.dumps(m["Integration"]) for m in found.values())


def test_the_ready_handler_answers_from_the_model_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("platform_ready", REPO / "infra" / "platform" / "handler.py")
    assert spec and spec.loader
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    from botocore.exceptions import ClientError

    present: set[str] = set()

    class Bucket:
        def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 (boto3's names)
            if Key not in present:
                raise ClientError({"Error": {"Code": "404"}}, "HeadObject")
            return {}

    monkeypatch.setenv("MEDFN_MODEL_STORE", "s3://models-bucket/models")
    monkeypatch.setenv("MEDFN_CATALOG", json.dumps([{"name": "m", "version": "1", "task": "t", "function": "f"}]))
    monkeypatch.setitem(handler._clients, "s3", Bucket())
    assert handler.ready({}, None)["statusCode"] == 503
    present.add("models/m/1/model.onnx")
    answer = handler.ready({}, None)
    assert answer["statusCode"] == 200 and json.loads(answer["body"]) == {"ready": True}


def test_the_stage_is_throttled_as_a_whole_and_per_health_route(template: Template) -> None:
    [stage] = template.find_resources("AWS::ApiGateway::Stage").values()
    settings = {(s["ResourcePath"], s["HttpMethod"]): s for s in stage["Properties"]["MethodSettings"]}
    tier = top_tier()
    assert settings[("/*", "*")]["ThrottlingRateLimit"] == tier["rate_limit"]
    assert settings[("/*", "*")]["ThrottlingBurstLimit"] == tier["burst_limit"]
    for probe in ("live", "ready"):
        found = settings[(f"/~1v2~1health~1{probe}", "GET")]
        assert (found["ThrottlingRateLimit"], found["ThrottlingBurstLimit"]) == (10, 20)
        assert found["LoggingLevel"] == "ERROR" and found["DataTraceEnabled"] is False


def test_a_waf_with_per_ip_rates_guards_the_stage_and_logs_what_it_blocks(template: Template) -> None:
    [(acl_id, acl)] = template.find_resources("AWS::WAFv2::WebACL").items()
    rules = {r["Name"]: r for r in acl["Properties"]["Rules"]}
    assert acl["Properties"]["Scope"] == "REGIONAL" and acl["Properties"]["DefaultAction"] == {"Allow": {}}
    health = rules["health-per-ip"]["Statement"]["RateBasedStatement"]
    assert health["Limit"] == 300 and health["AggregateKeyType"] == "IP"
    assert health["ScopeDownStatement"]["ByteMatchStatement"]["SearchString"] == "/v2/health/"
    everything = rules["per-ip"]["Statement"]["RateBasedStatement"]
    assert everything["Limit"] == top_tier()["rate_limit"] * 300  # a customer within the top tier is never blocked
    assert all(r["Action"] == {"Block": {}} for r in rules.values())
    [association] = template.find_resources("AWS::WAFv2::WebACLAssociation").values()
    [stage] = template.find_resources("AWS::ApiGateway::Stage")
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert {"Ref": stage} in association["Properties"]["ResourceArn"]["Fn::Join"][1]
    [logging] = template.find_resources("AWS::WAFv2::LoggingConfiguration").values()
    props = logging["Properties"]
    redacted = {f["SingleHeader"]["Name"] for f in props["RedactedFields"]}
    assert {"authorization", "x-api-key", "x-amz-security-token"} <= redacted
    assert props["LoggingFilter"]["DefaultBehavior"] == "DROP"
    groups = template.find_resources("AWS::Logs::LogGroup")
    [waf_group] = [g for g in groups.values() if "aws-waf-logs-" in json.dumps(g["Properties"].get("LogGroupName"))]
    assert "KmsKeyId" in waf_group["Properties"]


def test_model_routes_want_sigv4_and_an_api_key_by_default(template: Template) -> None:
    keyed = {k: m for k, m in methods(template).items() if k not in health_methods(template)}
    assert keyed and all(m["AuthorizationType"] == "AWS_IAM" and m["ApiKeyRequired"] is True for m in keyed.values())
    [policy] = template.find_resources("AWS::IAM::ManagedPolicy").values()
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke"
    paths = sorted(r["Fn::Join"][1][-1] for r in statement["Resource"])
    assert paths == ["/prod/*/v1/*", "/prod/*/v2", "/prod/*/v2/*"]
    assert "ApiInvokePolicyArn" in "".join(template.to_json()["Outputs"])


def test_a_cognito_user_pool_can_authorize_instead(project_root: Path, tmp_path: Path) -> None:
    template = variant(project_root, tmp_path, auth="cognito", user_pool_arn=USER_POOL)
    [(authorizer_id, authorizer)] = template.find_resources("AWS::ApiGateway::Authorizer").items()
    assert authorizer["Properties"]["Type"] == "COGNITO_USER_POOLS"
    assert authorizer["Properties"]["ProviderARNs"] == [USER_POOL]
    keyed = [m for k, m in methods(template).items() if k not in health_methods(template)]
    assert all(m["AuthorizationType"] == "COGNITO_USER_POOLS" for m in keyed)
    assert all(m["AuthorizerId"] == {"Ref": authorizer_id} and m["ApiKeyRequired"] for m in keyed)
    assert not template.find_resources("AWS::IAM::ManagedPolicy")


def test_keys_alone_and_no_waf_are_choices_not_defaults(project_root: Path, tmp_path: Path) -> None:
    template = variant(project_root, tmp_path, auth="api_key", waf="false")
    assert all(m["AuthorizationType"] == "NONE" for m in methods(template).values())
    assert not template.find_resources("AWS::WAFv2::WebACL")
    with pytest.raises(Exception, match="MEDFN_USER_POOL_ARN"):
        variant(project_root, tmp_path / "again", auth="cognito")
