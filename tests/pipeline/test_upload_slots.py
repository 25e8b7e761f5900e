"""`POST /v1/uploads` and the platform function, against a moto S3 server."""

from __future__ import annotations

import importlib.util
import json
import urllib.request

import boto3
import pytest

from medfn.errors import MedfnError
from medfn.pipeline.upload_slots import UploadTargets, parse_request, presign_upload
from tests.conftest import REPO

BUCKET = "medfn-uploads"


def platform_handler():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("platform_handler", REPO / "infra" / "platform" / "handler.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture
def s3(aws_env):  # type: ignore[no-untyped-def]
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    client.create_bucket(Bucket="medfn-models")
    return client


def test_presigned_put_lands_under_the_function_prefix(s3) -> None:  # type: ignore[no-untyped-def]
    targets = UploadTargets(BUCKET, {"scan_classifier": "scan_classifier/"})
    slot = presign_upload(s3, targets, "scan_classifier", "application/dicom")
    assert slot["method"] == "PUT" and slot["key"].startswith("scan_classifier/") and slot["key"].endswith(".dcm")
    request = urllib.request.Request(slot["upload_url"], data=b"DICM-bytes", method="PUT", headers=slot["headers"])
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 200
    stored = s3.get_object(Bucket=BUCKET, Key=slot["key"])
    assert stored["Body"].read() == b"DICM-bytes" and stored["ContentType"] == "application/dicom"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("not json", 400),
        ('{"content_type": "image/png"}', 400),
        ('{"model": "vitals_risk"}', 404),
        ('{"model": "scan_classifier", "content_type": "text/html"}', 415),
    ],
)
def test_bad_requests_are_named(s3, body: str, status: int) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MedfnError) as caught:
        presign_upload(s3, UploadTargets(BUCKET, {"scan_classifier": "scan_classifier/"}), *parse_request(body))
    assert caught.value.status == status


def test_platform_function_routes(s3, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEDFN_UPLOAD_BUCKET", BUCKET)
    monkeypatch.setenv("MEDFN_UPLOAD_PREFIXES", '{"scan_classifier": "scan_classifier/"}')
    monkeypatch.setenv("MEDFN_MODEL_STORE", "s3://medfn-models/models")
    monkeypatch.setenv(
        "MEDFN_CATALOG",
        '[{"name": "scan_classifier", "version": "1", "task": "image_classification", "function": "scan_classifier"}]',
    )
    platform = platform_handler()
    upload = platform.handler(
        {
            "httpMethod": "POST",
            "resource": "/v1/uploads",
            "body": '{"model": "scan_classifier", "content_type": "image/png"}',
        },
        None,
    )
    assert upload["statusCode"] == 200 and json.loads(upload["body"])["key"].endswith(".png")
    models = json.loads(platform.handler({"httpMethod": "GET", "resource": "/v1/models"}, None)["body"])["models"]
    assert models == [
        {
            "name": "scan_classifier",
            "version": "1",
            "task": "image_classification",
            "function": "scan_classifier",
            "ready": False,
        }
    ]
    assert platform.handler({"httpMethod": "GET", "resource": "/v2/health/ready"}, None)["statusCode"] == 503
    s3.put_object(Bucket="medfn-models", Key="models/scan_classifier/1/model.onnx", Body=b"onnx")
    assert platform.handler({"httpMethod": "GET", "resource": "/v2/health/ready"}, None)["statusCode"] == 200
    assert platform.handler({"httpMethod": "GET", "resource": "/v2/health/live"}, None)["statusCode"] == 200
    assert platform.handler({"httpMethod": "DELETE", "resource": "/v1/models"}, None)["statusCode"] == 404
