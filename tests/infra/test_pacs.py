"""PACS on both ends, in AWS (docs/pacs.md, "In AWS"): STOW-RS routes in API Gateway for every
function that takes uploads, the 413 that says how to send a body Lambda cannot take, and results
out to a DICOMweb destination named at synth, with exactly its secret.

What each role may call is test_permissions.py's (CALLS: "stow", "destination"); cdk-nag and
cfn-lint on a stack with a destination, test_security.py's (VARIANTS).
"""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from tests.conftest import REPO, load_event
from tests.infra.stack_project import DESTINATION, SECRET, SECRET_KEY, function_configs, function_of, logical_prefix
from tests.infra.test_permissions import http, uploads


class LambdaContext:
    aws_request_id = "stow-1"
    function_name = "scan_classifier"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:111122223333:function:scan_classifier:live"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def stow_functions(project_root: Path) -> dict[str, dict[str, Any]]:
    """Functions that take uploads and have HTTP routes: those STOW-RS reaches."""
    return {n: c for n, c in function_configs(project_root).items() if uploads(c) and http(c)}


def resource_paths(template: Template) -> dict[str, str]:
    """Logical id of each API Gateway resource -> its path (`/v1/models/x/predict`)."""
    resources = template.find_resources("AWS::ApiGateway::Resource")

    def path(logical: str) -> str:
        props = resources[logical]["Properties"]
        parent = props["ParentId"]
        above = path(parent["Ref"]) if "Ref" in parent else ""
        return f"{above}/{props['PathPart']}"

    return {logical: path(logical) for logical in resources}


def posts_by_path(template: Template) -> dict[str, dict[str, Any]]:
    paths = resource_paths(template)
    return {
        paths[m["Properties"]["ResourceId"]["Ref"]]: m["Properties"]
        for m in template.find_resources("AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "POST" and "Ref" in m["Properties"]["ResourceId"]
    }


def test_each_upload_function_takes_stow_rs_with_the_keys_and_authorizer_of_its_predict_route(
    template: Template, project_root: Path
) -> None:
    posts = posts_by_path(template)
    configs = function_configs(project_root)
    stow = stow_functions(project_root)
    assert {"scan_classifier", "scan_segmenter"} <= set(stow)
    for name, config in configs.items():
        base = f"/v1/models/{config['model']}"
        routes = [f"{base}/dicomweb/studies", f"{base}/dicomweb/studies/{{study}}"]
        if name not in stow:
            assert not any(r in posts for r in routes), name
            continue
        predict = posts[f"{base}/predict"]
        alias = logical_prefix(name) + "Live"
        for route in routes:
            method = posts[route]
            # the same authorizer, API key (and so usage plan) as the model's predict route
            for field in ("AuthorizationType", "ApiKeyRequired", "RequestValidatorId"):
                assert method[field] == predict[field], (route, field)
            assert method["ApiKeyRequired"] is True and method["AuthorizationType"] == "AWS_IAM"
            integration = method["Integration"]
            assert integration["Type"] == "AWS_PROXY" and alias in json.dumps(integration["Uri"]), route
            assert method["RequestParameters"]["method.request.header.Content-Type"] is True
        assert posts[routes[1]]["RequestParameters"]["method.request.path.study"] is True
    # nothing else under a dicomweb resource: STOW-RS only (no QIDO-RS or WADO-RS here)
    dicomweb = {p for p in resource_paths(template).values() if "/dicomweb" in p}
    assert dicomweb == {
        f"/v1/models/{configs[n]['model']}/dicomweb{tail}"
        for n in stow
        for tail in ("", "/studies", "/studies/{study}")
    }


def test_the_routes_are_in_the_customer_invoke_policy_and_their_roots_are_outputs(
    template: Template, project_root: Path
) -> None:
    from medfn_infra.api import INVOKE_PATHS

    assert "/v1/*" in INVOKE_PATHS  # execute-api:Invoke on /v1/models/<model>/dicomweb/... too
    outputs = {k: json.dumps(v["Value"]) for k, v in template.to_json()["Outputs"].items() if "Dicomweb" in k}
    for name, config in stow_functions(project_root).items():
        [value] = [
            v for k, v in outputs.items() if k.startswith(f"ApiDicomweb{logical_prefix(name)[: -len('Function')]}")
        ]
        assert f"/v1/models/{config['model']}/dicomweb" in value


def test_stow_rs_bodies_and_answers_are_binary_media_types(template: Template) -> None:
    [api] = template.find_resources("AWS::ApiGateway::RestApi").values()
    types = api["Properties"]["BinaryMediaTypes"]
    # the request (multipart/related; type="application/dicom"; boundary=...) reaches Lambda as base64;
    # the answer leaves Mangum base64-encoded and is decoded for a client that accepts DICOM JSON
    assert "multipart/related" in types and "application/dicom+json" in types
    assert "*/*" not in types  # JSON bodies stay text: the request validator reads them


def test_a_body_lambda_cannot_take_is_a_413_that_says_what_to_do(template: Template) -> None:
    from medfn.dicomweb.multipart import TOO_LARGE_HINT

    [response] = template.find_resources(
        "AWS::ApiGateway::GatewayResponse", {"Properties": {"ResponseType": "REQUEST_TOO_LARGE"}}
    ).values()
    props = response["Properties"]
    assert props["StatusCode"] == "413"
    body = json.loads(props["ResponseTemplates"]["application/json"])  # medfn's error shape
    assert list(body) == ["error"]
    assert TOO_LARGE_HINT in body["error"] and "POST /v1/uploads" in body["error"]
    assert "4.5 MB" in body["error"] and "10 MB" in body["error"]
    assert "$" not in props["ResponseTemplates"]["application/json"]  # a mapping template: nothing to evaluate


def test_the_stated_limit_fits_lambdas_payload_once_base64_encoded() -> None:
    from medfn_infra.api import API_GATEWAY_BODY_MB, LAMBDA_BINARY_BODY_MB

    lambda_payload = 6_291_556  # Lambda's synchronous invocation request, in bytes
    event = len(json.dumps(load_event("apigw_rest")))  # the event around the body
    body = int(LAMBDA_BINARY_BODY_MB * 1_000_000)
    assert 4 * -(-body // 3) + 4 * event < lambda_payload  # with room for headers four times AWS's sample's
    assert LAMBDA_BINARY_BODY_MB < API_GATEWAY_BODY_MB


def test_stow_rs_writes_where_the_function_listens(template: Template, project_root: Path) -> None:
    [uploads_bucket] = [k for k in template.find_resources("AWS::S3::Bucket") if k.startswith("StorageUploads")]
    stow = stow_functions(project_root)
    for name in function_configs(project_root):
        env = function_of(template, name)["Environment"]["Variables"]
        if name in stow:
            assert env["MEDFN_UPLOAD_BUCKET"] == {"Ref": uploads_bucket}
        else:  # no STOW-RS route reaches it: neither the variable nor the grant (test_permissions.py)
            assert "MEDFN_UPLOAD_BUCKET" not in env, name
        assert not any(k.startswith(("MEDFN_DICOMWEB", "MEDFN_DESTINATION", "MEDFN_CSTORE")) for k in env), name
    statements = json.dumps(template.find_resources("AWS::IAM::Policy"))
    assert "secretsmanager:" not in statements  # no destination by default, so no secret


def test_a_destination_reaches_every_upload_function_with_its_secret_alone(
    destination_template: Template, project_root: Path
) -> None:
    from medfn_infra.pipeline import DESTINATION_SHARE, DESTINATION_WAITS_S

    configs = function_configs(project_root)
    for name, config in configs.items():
        props = function_of(destination_template, name)
        env = props["Environment"]["Variables"]
        if not uploads(config):
            assert not any(k.startswith(("MEDFN_DICOMWEB", "MEDFN_DESTINATION")) for k in env), name
            continue
        assert env["MEDFN_DICOMWEB_URL"] == DESTINATION["medfn:dicomweb_url"]
        assert env["MEDFN_DICOMWEB_SECRET"] == SECRET  # the ARN the code reads the secret by; never a value
        attempts, timeout = int(env["MEDFN_DESTINATION_ATTEMPTS"]), float(env["MEDFN_DESTINATION_TIMEOUT_S"])
        # a PACS that never answers costs at most this share of the function's timeout (or 1 s a try):
        # the worker then writes its retryable error record, instead of Lambda timing the invocation out
        assert attempts * timeout + DESTINATION_WAITS_S <= max(
            props["Timeout"] * DESTINATION_SHARE, attempts + DESTINATION_WAITS_S
        )
        assert timeout >= 1
        assert "MEDFN_CSTORE_DESTINATION" not in env
    # the customer's secret is read, never made: no secret (and no value) in the template
    assert not destination_template.find_resources("AWS::SecretsManager::Secret")
    grants = [
        s
        for policy in destination_template.find_resources("AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "secretsmanager" in json.dumps(s)
    ]
    reads = [s for s in grants if s["Action"] == "secretsmanager:GetSecretValue"]
    assert len(reads) == len([c for c in configs.values() if uploads(c)])
    assert all(s["Resource"] == SECRET for s in reads)
    decrypts = [s for s in grants if s["Action"] == "kms:Decrypt"]
    assert decrypts and all(s["Resource"] == SECRET_KEY for s in decrypts)
    assert all(s["Condition"]["StringEquals"]["kms:EncryptionContext:SecretARN"] == SECRET for s in decrypts)


def test_without_a_key_the_secret_is_read_with_secrets_managers_own(project_root: Path, tmp_path: Path) -> None:
    from tests.infra.test_api import variant

    template = variant(
        project_root, tmp_path, dicomweb_url="https://pacs.example.org/dicom-web", dicomweb_secret_arn=SECRET
    )
    statements = json.dumps(template.find_resources("AWS::IAM::Policy"))
    assert "secretsmanager:GetSecretValue" in statements and "kms:EncryptionContext:SecretARN" not in statements
    url_only = variant(project_root, tmp_path / "url", dicomweb_url="https://pacs.example.org/dicom-web")
    assert "secretsmanager:" not in json.dumps(url_only.find_resources("AWS::IAM::Policy"))
    env = function_of(url_only, "scan_classifier")["Environment"]["Variables"]
    assert env["MEDFN_DICOMWEB_URL"] and "MEDFN_DICOMWEB_SECRET" not in env


@pytest.mark.parametrize(
    ("settings", "refusal"),
    [
        ({"dicomweb_url": "http://pacs.example.org/dicom-web"}, "https://"),
        ({"dicomweb_url": "https://user:pw@pacs.example.org/dicom-web"}, "no credentials"),
        ({"dicomweb_secret_arn": SECRET}, "needs MEDFN_DICOMWEB_URL"),
        ({"dicomweb_url": "https://p.example", "dicomweb_secret_arn": SECRET[: -len("-AbC123")]}, "complete ARN"),
        ({"dicomweb_url": "https://p.example", "dicomweb_secret_key_arn": SECRET_KEY}, "name it"),
        ({"dicomweb_url": "https://p.example", "dicomweb_secret_arn": SECRET, "dicomweb_secret_key_arn": "alias/x"},
         "KMS key's ARN"),
    ],
)  # fmt: skip
def test_a_destination_that_would_leak_or_grant_the_wrong_thing_is_refused(settings: dict[str, str], refusal: str):
    from medfn_infra.settings import Settings

    with pytest.raises(ValueError, match=refusal):
        Settings(**settings)


def test_a_secret_in_another_region_is_refused(
    project_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.infra.test_api import variant

    region = SECRET.split(":")[3]
    monkeypatch.setenv("CDK_DEFAULT_REGION", "eu-west-1" if region != "eu-west-1" else "us-east-1")
    with pytest.raises(Exception, match="stack's region"):
        variant(project_root, tmp_path, **{k[6:]: v for k, v in DESTINATION.items()})


def test_each_stow_route_reaches_the_functions_stow_rs(
    template: Template, project_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event API Gateway sends for each STOW-RS route, into the function's own handler."""
    from pydicom.data import get_testdata_file

    import medfn.dicomweb.sinks as sinks
    from medfn.lambda_handler import make_handler

    stored: list[str] = []

    class Bucket:
        def put_object(self, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:  # noqa: N803 (boto3's names)
            stored.append(f"{Bucket}/{Key}")
            return {}

    monkeypatch.setenv("MEDFN_UPLOAD_BUCKET", "uploads")
    monkeypatch.setenv("MEDFN_MODEL_STORE", str(REPO / "model_store"))
    monkeypatch.setattr(sinks.S3Sink, "client", property(lambda self: Bucket()))
    handler = make_handler(str(REPO / "functions" / "scan_classifier" / "handler.py"))
    instance = Path(str(get_testdata_file("CT_small.dcm"))).read_bytes()
    body = b"--b0undary\r\nContent-Type: application/dicom\r\n\r\n" + instance + b"\r\n--b0undary--\r\n"
    routes = [p for p in posts_by_path(template) if p.startswith("/v1/models/scan_classifier/dicomweb/")]
    assert len(routes) == 2
    for route in routes:
        event = copy.deepcopy(load_event("apigw_rest"))
        study = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"  # CT_small's
        path = route.replace("{study}", study)
        parameters = {"study": study} if "{" in route else None
        event.update(resource=route, path=path, httpMethod="POST", pathParameters=parameters,
                     isBase64Encoded=True, body=base64.b64encode(body).decode())  # fmt: skip
        event["requestContext"].update(path=f"/prod{path}", httpMethod="POST", resourcePath=route)
        headers = {"content-type": 'multipart/related; type="application/dicom"; boundary=b0undary',
                   "accept": "application/dicom+json"}  # fmt: skip
        event["headers"].update(headers)
        event.setdefault("multiValueHeaders", {}).update({k: [v] for k, v in headers.items()})
        answer = handler(event, LambdaContext())
        assert answer["statusCode"] == 200, (route, answer["statusCode"], answer.get("body", "")[:200])
    assert len(stored) == 2 and all(k.startswith("uploads/scan_classifier/") for k in stored)


def test_the_stack_names_every_variable_the_code_reads_for_pacs(destination_template: Template) -> None:
    """What the code reads (medfn.dicomweb.destination_from_env, credentials.CredentialSource,
    medfn.sources.http.upload_sink) is what the stack sets, by the same names."""
    sources = "".join(
        (REPO / "src" / "medfn" / path).read_text("utf-8")
        for path in ("dicomweb/destination.py", "dicomweb/credentials.py", "sources/http.py")
    )
    env = function_of(destination_template, "scan_classifier")["Environment"]["Variables"]
    for name in ("MEDFN_DICOMWEB_URL", "MEDFN_DICOMWEB_SECRET", "MEDFN_DESTINATION_ATTEMPTS",
                 "MEDFN_DESTINATION_TIMEOUT_S", "MEDFN_UPLOAD_BUCKET"):  # fmt: skip
        assert f'"{name}"' in sources and name in env, name


def test_a_container_function_that_takes_uploads_gets_the_pacs_extra(assembly_dir: Path, project_root: Path) -> None:
    """Its image (containers/lambda.Dockerfile) installs `pacs` beside the default extras; zips:
    medfn.packaging.build.requirements (tests/test_packaging.py)."""
    manifest = json.loads((assembly_dir / "medfn.assets.json").read_text())
    sources = [i["source"] for i in manifest["dockerImages"].values()]
    images = {s["dockerBuildArgs"]["FUNCTION"]: s["dockerBuildArgs"] for s in sources if "dockerBuildArgs" in s}
    dockerfile = (REPO / "containers" / "lambda.Dockerfile").read_text("utf-8")
    [default] = re.findall(r"^ARG EXTRAS=(\S+)$", dockerfile, flags=re.MULTILINE)
    configs = function_configs(project_root)
    assert images and any(uploads(configs[name]) for name in images)
    for name, args in images.items():
        extras = set(args.get("EXTRAS", default).split(","))
        assert ("pacs" in extras) == uploads(configs[name]), name
        assert set(default.split(",")) <= extras, name  # the Dockerfile's own extras kept
