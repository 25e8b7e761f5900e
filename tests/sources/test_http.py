"""The Lambda handler fed each HTTP event shape AWS documents (sample events in tests/events/)."""

from __future__ import annotations

import base64
import copy

import numpy as np
import orjson
import pytest

from model_store.build import chest_phantoms
from tests.conftest import load_event


class Context:
    aws_request_id = "lambda-req-1"
    function_name = "scan_classifier"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:scan_classifier"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def http_event(kind: str, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> dict:
    """A documented sample event of `kind`, re-pointed at `path` with `body` (base64, as binary)."""
    event = copy.deepcopy(load_event(kind))
    headers = {"content-type": content_type} if content_type else {}
    if kind in ("apigw_http", "function_url"):
        prefix = "/prod" if kind == "apigw_http" else ""
        event["rawPath"] = event["requestContext"]["http"]["path"] = prefix + path
        event["requestContext"]["http"]["method"] = method
        event["headers"].update(headers)
    else:
        event["path"], event["httpMethod"] = path, method
        if kind == "apigw_rest":
            event["requestContext"]["path"] = "/prod" + path
            event["requestContext"]["httpMethod"] = method
        if "multiValueHeaders" in event:
            event["multiValueHeaders"].update({k: [v] for k, v in headers.items()})
        if "headers" in event:
            event["headers"].update(headers)
    if body is not None:
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return event


def decoded_body(response: dict) -> bytes:
    body = response.get("body") or ""
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


ALL_KINDS = ["apigw_rest", "apigw_http", "function_url", "alb", "alb_multi_value"]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_health_through_every_event_kind(classifier_handler, kind: str) -> None:  # type: ignore[no-untyped-def]
    response = classifier_handler(http_event(kind, "GET", "/v2/health/ready"), Context())
    assert response["statusCode"] == 200
    assert orjson.loads(decoded_body(response)) == {"ready": True}
    if kind == "alb_multi_value":
        assert "multiValueHeaders" in response  # ALB answers in the shape it asked in


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_binary_scan_in_json_answer_out(classifier_handler, kind: str) -> None:  # type: ignore[no-untyped-def]
    images, labels = chest_phantoms.generate(2, seed=7, size=128)
    event = http_event(
        kind, "POST", "/v1/models/scan_classifier/predict", chest_phantoms.to_dicom(images[1]), "application/dicom"
    )
    response = classifier_handler(event, Context())
    assert response["statusCode"] == 200, response
    body = orjson.loads(decoded_body(response))
    assert body["label"] == chest_phantoms.LABELS[labels[1]]
    assert body["request_id"] == "lambda-req-1"  # Lambda's request id, for tracing


def test_binary_tensor_answer_is_base64_encoded(classifier_handler) -> None:  # type: ignore[no-untyped-def]
    x = np.zeros((1, 1, 128, 128), dtype=np.float32)
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [1, 1, 128, 128],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    event = http_event(
        "apigw_rest", "POST", "/v2/models/scan_classifier/infer", head + x.tobytes(), "application/octet-stream"
    )
    event["headers"]["Inference-Header-Content-Length"] = str(len(head))
    event["multiValueHeaders"]["Inference-Header-Content-Length"] = [str(len(head))]
    response = classifier_handler(event, Context())
    assert response["statusCode"] == 200 and response["isBase64Encoded"] is True
    raw = decoded_body(response)
    split = int(response["headers"]["inference-header-content-length"])
    probabilities = np.frombuffer(raw[split:], dtype="<f4")
    assert probabilities.shape == (2,) and abs(float(probabilities.sum()) - 1.0) < 1e-4


def test_http_api_named_stage_is_stripped(classifier_handler) -> None:  # type: ignore[no-untyped-def]
    event = http_event("apigw_http", "GET", "/v1/models")
    assert event["rawPath"] == "/prod/v1/models"
    response = classifier_handler(event, Context())
    assert response["statusCode"] == 200
    assert orjson.loads(decoded_body(response))["models"][0]["name"] == "scan_classifier"


def test_rest_event_without_optional_fields(classifier_handler) -> None:  # type: ignore[no-untyped-def]
    event = load_event("apigw_rest")
    for optional in (
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "stageVariables",
        "body",
    ):
        event.pop(optional, None)
    event["path"] = "/v2/health/live"
    assert classifier_handler(event, Context())["statusCode"] == 200


def test_errors_come_back_as_json_answers(classifier_handler) -> None:  # type: ignore[no-untyped-def]
    event = http_event("apigw_http", "POST", "/v1/models/scan_classifier/predict", b"garbage", "image/png")
    response = classifier_handler(event, Context())
    assert response["statusCode"] == 422
    assert "error" in orjson.loads(decoded_body(response))


@pytest.mark.parametrize(
    "event", [{}, {"source": "aws.events", "detail-type": "Scheduled Event"}, {"Records": [{"eventSource": "aws:sns"}]}]
)
def test_unknown_events_are_ignored_not_fatal(classifier_handler, event: dict) -> None:  # type: ignore[no-untyped-def]
    assert classifier_handler(event, Context()) == {"ignored": True}
