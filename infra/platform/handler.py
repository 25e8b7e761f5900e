"""The platform function: the routes that belong to no single model.

`POST /v1/uploads` (presigned upload slots), `GET /v1/models` (the catalog of every deployed
model), and the server-level Open Inference Protocol routes (`GET /v2`, `/v2/health/*`).
It imports no FastAPI and no onnxruntime: a small, fast function that costs nothing idle.

In AWS the health routes, which take no credentials, do not reach `handler`: API Gateway
answers `/v2/health/live` itself and sends `/v2/health/ready` to `ready`, deployed as a
function of its own (infra/medfn_infra/stack.py), so a flood of probes cannot use up the
environments that serve uploads and the catalog.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import medfn
from medfn.errors import MedfnError
from medfn.pipeline.upload_slots import UploadTargets, parse_request, presign_upload

_clients: dict[str, Any] = {}
_ready: set[str] = set()  # models whose artifact was seen in the model bucket (once is enough)


def s3() -> Any:
    if "s3" not in _clients:
        import boto3
        from botocore.config import Config

        # SigV4: the upload bucket is KMS-encrypted, and S3 takes only SigV4 for such objects
        _clients["s3"] = boto3.client("s3", config=Config(signature_version="s3v4"))
    return _clients["s3"]


def catalog() -> list[dict[str, Any]]:
    """Every deployed model, written into MEDFN_CATALOG by the CDK app, with its readiness."""
    from botocore.exceptions import ClientError

    bucket, _, prefix = os.environ["MEDFN_MODEL_STORE"].removeprefix("s3://").partition("/")
    rows = []
    for entry in json.loads(os.environ.get("MEDFN_CATALOG", "[]")):
        name = entry["name"]
        if name not in _ready:
            try:
                s3().head_object(Bucket=bucket, Key=f"{prefix}/{name}/{entry['version']}/model.onnx")
                _ready.add(name)
            except ClientError:
                pass
        rows.append({**entry, "ready": name in _ready})
    return rows


def answer(status: int, body: Any) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    route = (event.get("httpMethod"), event.get("resource") or event.get("path"))
    if route == ("POST", "/v1/uploads"):
        try:
            body = event.get("body")
            model, content_type = parse_request(base64.b64decode(body) if event.get("isBase64Encoded") else body)
            identity = (event.get("requestContext") or {}).get("identity") or {}
            key_id = identity.get("apiKeyId") or "anonymous"  # kept with the upload, for metering
            targets = UploadTargets.from_env(dict(os.environ))
            return answer(200, presign_upload(s3(), targets, model, content_type, key_id))
        except MedfnError as exc:
            return answer(exc.status, {"error": exc.message})
    if route == ("GET", "/v1/models"):
        return answer(200, {"models": catalog()})
    if route == ("GET", "/v2"):
        return answer(200, {"name": "medfn", "version": medfn.__version__, "extensions": ["binary_tensor_data"]})
    if route == ("GET", "/v2/health/live"):
        return answer(200, {"live": True})
    if route == ("GET", "/v2/health/ready"):
        return ready(event, context)
    return answer(404, {"error": f"no route {route[0]} {route[1]}"})


def ready(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """`GET /v2/health/ready`: 200 when every deployed model's artifact is in the bucket, else 503."""
    is_ready = all(row["ready"] for row in catalog())
    return answer(200 if is_ready else 503, {"ready": is_ready})
