"""`POST /v1/uploads` and the platform function, against a moto S3 server."""

from __future__ import annotations

import base64
import importlib.util
import json

import boto3
import pytest
import requests
from botocore.config import Config

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
    client = boto3.client("s3", config=Config(signature_version="s3v4"))
    client.create_bucket(Bucket=BUCKET)
    client.create_bucket(Bucket="medfn-models")
    return client


def test_a_slot_is_a_sigv4_post_for_one_key_one_type_and_a_size_range(s3) -> None:  # type: ignore[no-untyped-def]
    targets = UploadTargets(BUCKET, {"scan_classifier": "scan_classifier/"}, max_bytes=1000)
    slot = presign_upload(s3, targets, "scan_classifier", "application/dicom", key_id="clinic-a")
    assert slot["method"] == "POST" and slot["key"].startswith("scan_classifier/") and slot["key"].endswith(".dcm")
    assert slot["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    policy = json.loads(base64.b64decode(slot["fields"]["policy"]))
    # S3 enforces the policy's conditions (moto accepts any size, so the policy itself is checked)
    assert ["content-length-range", 1, 1000] in policy["conditions"]
    assert {"x-amz-meta-medfn-key-id": "clinic-a"} in policy["conditions"]
    answer = requests.post(slot["upload_url"], data=slot["fields"], files={"file": b"DICM-bytes"}, timeout=30)
    assert answer.status_code in (200, 204), answer.text
    stored = s3.get_object(Bucket=BUCKET, Key=slot["key"])
    assert stored["Body"].read() == b"DICM-bytes" and stored["ContentType"] == "application/dicom"
    assert stored["Metadata"]["medfn-key-id"] == "clinic-a"


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
