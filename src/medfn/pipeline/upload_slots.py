"""`POST /v1/uploads`: a presigned S3 POST for a scan too big for a synchronous call.

API Gateway and Lambda cap a request at 10 MB and 6 MB; a CT series is larger. The client
asks for an upload slot for a model, POSTs the scan straight to the upload bucket, and the
pipeline (S3 event -> SQS -> the model's function) writes the result. Object keys are
made here, never from the client's file name, which may carry a patient's name.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from medfn.errors import BadRequest, NotFound, UnsupportedMediaType

# Scan types the image functions decode, and the key suffix each gets.
CONTENT_TYPES = {
    "application/dicom": ".dcm",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "application/octet-stream": ".bin",
}
DEFAULT_EXPIRES_S = 900
DEFAULT_MAX_BYTES = 512 * 1024 * 1024  # the pipeline's own limit (PipelineSettings.max_object_bytes)
# The API key that asked for the slot, kept with the upload; its presence marks a slot's object.
SLOT_METADATA = "medfn-key-id"
KEY_ID_FIELD = f"x-amz-meta-{SLOT_METADATA}"


@dataclass(frozen=True)
class UploadTargets:
    bucket: str
    prefixes: dict[str, str]  # model -> key prefix its function's queue listens on
    expires_s: int = DEFAULT_EXPIRES_S
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_env(cls, env: dict[str, str]) -> UploadTargets:
        return cls(
            bucket=env["MEDFN_UPLOAD_BUCKET"],
            prefixes=json.loads(env.get("MEDFN_UPLOAD_PREFIXES", "{}")),
            expires_s=int(env.get("MEDFN_UPLOAD_EXPIRES_S", DEFAULT_EXPIRES_S)),
            max_bytes=int(env.get("MEDFN_UPLOAD_MAX_BYTES", DEFAULT_MAX_BYTES)),
        )


def parse_request(body: str | bytes | None) -> tuple[str, str]:
    """(model, content type) from `{"model": ..., "content_type": ...}`."""
    try:
        request = json.loads(body or "")
    except ValueError:
        raise BadRequest('the body must be JSON: {"model": "...", "content_type": "application/dicom"}') from None
    if not isinstance(request, dict) or not isinstance(request.get("model"), str):
        raise BadRequest('the body must name a model: {"model": "...", "content_type": "..."}')
    content_type = str(request.get("content_type") or "application/dicom").split(";", 1)[0].strip().lower()
    return request["model"], content_type


def presign_upload(
    client: Any, targets: UploadTargets, model: str, content_type: str, key_id: str = "anonymous"
) -> dict[str, Any]:
    """The upload slot: a presigned POST (SigV4) for one key, one content type, a size range and
    the caller's key id, which S3 itself enforces; the form's fields go with the file."""
    prefix = targets.prefixes.get(model)
    if prefix is None:
        raise NotFound(f"model {model!r} takes no uploads; models that do: {sorted(targets.prefixes)}")
    suffix = CONTENT_TYPES.get(content_type)
    if suffix is None:
        raise UnsupportedMediaType(f"content_type must be one of {sorted(CONTENT_TYPES)}")
    day = datetime.now(UTC).strftime("%Y/%m/%d")
    key = f"{prefix}{day}/{uuid.uuid4().hex}{suffix}"
    fields = {"Content-Type": content_type, KEY_ID_FIELD: key_id}
    post = client.generate_presigned_post(
        Bucket=targets.bucket,
        Key=key,
        Fields=fields,
        Conditions=[*({name: value} for name, value in fields.items()), ["content-length-range", 1, targets.max_bytes]],
        ExpiresIn=targets.expires_s,
    )
    if post["fields"].get("x-amz-algorithm") != "AWS4-HMAC-SHA256":  # KMS-encrypted buckets take SigV4 only
        raise RuntimeError("the S3 client must sign with SigV4: Config(signature_version='s3v4')")
    return {
        "upload_url": post["url"],
        "method": "POST",
        "fields": post["fields"],
        "bucket": targets.bucket,
        "key": key,
        "max_bytes": targets.max_bytes,
        "expires_in": targets.expires_s,
    }
