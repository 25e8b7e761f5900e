"""Scans in S3: fetch the exact version an event names, write results, quarantine poison."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from medfn.errors import ObjectMissing, PayloadTooLarge, StorageUnavailable, UnprocessableInput
from medfn.pipeline.settings import PipelineSettings
from medfn.pipeline.storage import RESULT_MEDIA_TYPES, tag_safe
from medfn.pipeline.types import Fetched, ObjectRef
from medfn.pipeline.upload_slots import SLOT_METADATA

log = logging.getLogger(__name__)

_GONE = {"NoSuchKey", "NoSuchVersion", "404"}
_CHANGED = {"PreconditionFailed", "412"}


class S3Storage:
    def __init__(self, settings: PipelineSettings, client: Any = None) -> None:
        self.settings = settings
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # the upload path only: HTTP functions never pay for it

            self._client = boto3.client("s3")
        return self._client

    def fetch(self, ref: ObjectRef) -> Fetched:
        self._check_size(ref.size)
        # The version and If-Match on the ETag: a later upload under the same key has its
        # own event, and must not be answered under this one's name.
        selector = {"VersionId": ref.version_id} if ref.versioned else {}
        if ref.etag:
            selector["IfMatch"] = _quoted(ref.etag)
        with _s3_errors("GetObject"):
            response = self.client.get_object(Bucket=ref.bucket, Key=ref.key, **selector)
            self._check_size(response.get("ContentLength"))
            data: bytes = response["Body"].read()
        key_id = (response.get("Metadata") or {}).get(SLOT_METADATA)
        if key_id is not None and ref.versioned:
            self._check_first_of_slot(ref)
        return Fetched(data, _key_id(key_id))

    def _check_first_of_slot(self, ref: ObjectRef) -> None:
        """An upload slot buys one scan: a later version under a slot's key is refused (S3 lists a
        key's versions newest first; the slot's scan is the oldest still there)."""
        with _s3_errors("ListObjectVersions"):
            pages = self.client.get_paginator("list_object_versions").paginate(Bucket=ref.bucket, Prefix=ref.key)
            versions = [v["VersionId"] for page in pages for v in page.get("Versions", []) if v["Key"] == ref.key]
        if versions and versions[-1] != ref.version_id:
            raise UnprocessableInput(
                "this upload slot was used before: a slot takes one scan; ask POST /v1/uploads for another"
            )

    def write_result(self, ref: ObjectRef, suffix: str, document: bytes) -> str:
        bucket = self.settings.results_bucket or ref.bucket
        key = f"{self.settings.results_prefix}{ref.key}{suffix}"
        with _s3_errors("PutObject"):
            self.client.put_object(Bucket=bucket, Key=key, Body=document, ContentType=RESULT_MEDIA_TYPES[suffix])
        return f"s3://{bucket}/{key}"

    def quarantine(self, ref: ObjectRef, code: str, reason: str) -> str:
        tags = {"medfn-quarantine": tag_safe(code), "medfn-reason": tag_safe(reason)}
        if self.settings.quarantine_mode == "tag":
            with _s3_errors("PutObjectTagging"):
                version = {"VersionId": ref.version_id} if ref.versioned else {}
                current = self.client.get_object_tagging(Bucket=ref.bucket, Key=ref.key, **version)["TagSet"]
                merged = {t["Key"]: t["Value"] for t in current} | tags
                self.client.put_object_tagging(
                    Bucket=ref.bucket,
                    Key=ref.key,
                    **version,
                    Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in merged.items()]},
                )
            return ref.uri
        key = f"{self.settings.quarantine_prefix}{ref.key}"
        source = {"Bucket": ref.bucket, "Key": ref.key} | ({"VersionId": ref.version_id} if ref.versioned else {})
        try:
            with _s3_errors("CopyObject"):
                self.client.copy_object(
                    Bucket=ref.bucket, Key=key, CopySource=source, TaggingDirective="REPLACE", Tagging=urlencode(tags)
                )
        except ObjectMissing:
            pass  # a concurrent delivery moved it already: the copy is there
        return f"s3://{ref.bucket}/{key}"

    def release(self, ref: ObjectRef) -> None:
        if self.settings.quarantine_mode != "move":
            return
        # Exactly what was copied, never a newer upload under the same key: that version, or
        # (unversioned) the object only while its ETag is still the one the event named.
        if ref.versioned:
            selector = {"VersionId": ref.version_id}
        elif ref.etag:
            selector = {"IfMatch": _quoted(ref.etag)}
        else:
            log.warning("left in place: no version or ETag tells this upload apart from a newer one: %s", ref.shown)
            return
        with _s3_errors("DeleteObject"):
            self.client.delete_object(Bucket=ref.bucket, Key=ref.key, **selector)

    def _check_size(self, size: int | None) -> None:
        if size is not None and int(size) > self.settings.max_object_bytes:
            raise PayloadTooLarge(f"object is {int(size)} bytes, over the limit of {self.settings.max_object_bytes}")


def _quoted(etag: str) -> str:
    """Events carry the ETag bare; If-Match wants it quoted, as HTTP writes entity tags."""
    return '"' + etag.strip('"') + '"'


@contextmanager
def _s3_errors(operation: str) -> Iterator[None]:
    """Map botocore's errors at the boundary: gone or changed -> ObjectMissing, else transient."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _GONE:
            raise ObjectMissing(f"S3 {operation}: the object no longer exists") from exc
        if code in _CHANGED:
            raise ObjectMissing(f"S3 {operation}: the object was overwritten since the event") from exc
        raise StorageUnavailable(f"S3 {operation} failed ({code or 'no error code'})") from exc
    except BotoCoreError as exc:  # no connection, timeouts, a broken response stream
        raise StorageUnavailable(f"S3 {operation} failed ({type(exc).__name__})") from exc


def _key_id(value: str | None) -> str:
    """The slot's key id as medfn.pipeline.upload_slots wrote it; anything else is cut to the
    characters an API Gateway key id has, so a record or metric never carries free text."""
    return re.sub(r"[^A-Za-z0-9_-]", "", value or "")[:128]
