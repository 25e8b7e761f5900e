"""S3 pipeline details against the moto server: partial batch failures and redrive, the
asynchronous attempt count, tag quarantine, FHIR output, a results bucket, vanished objects."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from medfn.errors import TransientFailure
from medfn.sources import S3Notifications, SqsUploads
from tests.conftest import load_event
from tests.pipeline.flaky_s3 import FlakyS3
from tests.pipeline.s3_helpers import (
    MAX_ATTEMPTS,
    keys_under,
    make_bucket,
    s3_event,
    sqs_event,
    status_items,
    upload,
)
from tests.pipeline.test_corpus import corpus

PNG, DICOM = (next(s for s in corpus() if s.kind == kind) for kind in ("png", "dicom"))
TEXT = next(s for s in corpus() if s.kind == "text")


def message(
    bucket: str, key: str, put: dict[str, Any], size: int, receive_count: int, message_id: str
) -> dict[str, Any]:
    body = json.dumps(s3_event(bucket, key, put, size))
    return {
        "MessageId": message_id,
        "ReceiptHandle": f"handle-{message_id}",
        "Body": body,
        "MD5OfBody": "0" * 32,
        "Attributes": {"ApproximateReceiveCount": str(receive_count)},
    }


def test_one_bad_message_fails_alone_and_a_redrive_replaces_its_error(
    classifier_handler: Any,
    pipeline_env: dict[str, Any],
    flaky_s3: FlakyS3,  # noqa: F811
) -> None:
    bucket = make_bucket(pipeline_env, with_queue=False)["bucket"]
    scans = {"good.png": PNG, "down.dcm": DICOM, "notes.txt": TEXT}
    puts = upload(pipeline_env, bucket, tuple(type(s)(k, s.data, s.kind) for k, s in scans.items()))
    flaky_s3.fail("down.dcm")
    test_event = load_event("sqs_s3_test_event")["Records"][0]
    batch = lambda count: sqs_event(  # noqa: E731
        [message(bucket, k, puts[k], len(s.data), count, f"m-{k}") for k, s in scans.items()], "arn:aws:sqs:q"
    )
    for attempt in range(1, MAX_ATTEMPTS + 1):  # SQS redelivers what failed; the last attempt records it
        event = batch(attempt)
        event["Records"].append(test_event)
        assert classifier_handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "m-down.dcm"}]}
    items = {item["key"]: item for item in status_items(pipeline_env, bucket)}
    assert {k: (i["outcome"], i.get("retryable")) for k, i in items.items()} == {
        "good.png": ("result", False),
        "notes.txt": ("error", False),
        "down.dcm": ("error", True),
    }
    assert items["down.dcm"]["attempts"] == MAX_ATTEMPTS

    flaky_s3.clear()  # S3 is back; the DLQ is redriven: the message arrives as new
    assert classifier_handler(batch(1), None) == {"batchItemFailures": []}
    items = {item["key"]: item for item in status_items(pipeline_env, bucket)}
    assert len(items) == 3 and items["down.dcm"]["outcome"] == "result"
    assert keys_under(pipeline_env, bucket, "results/") == {
        "results/good.png.json",
        "results/down.dcm.json",
        "results/down.dcm.sr.dcm",
    }


def test_direct_events_count_attempts_in_the_status_table(
    classifier_handler: Any,
    pipeline_env: dict[str, Any],
    flaky_s3: FlakyS3,  # noqa: F811
) -> None:
    bucket = make_bucket(pipeline_env, with_queue=False)["bucket"]
    puts = upload(pipeline_env, bucket, (PNG,))
    flaky_s3.fail(PNG.key)
    event = s3_event(bucket, PNG.key, puts[PNG.key], len(PNG.data))
    for _ in range(MAX_ATTEMPTS):  # Lambda's asynchronous retries
        with pytest.raises(TransientFailure):
            classifier_handler(event, None)
    (item,) = status_items(pipeline_env, bucket)
    assert (item["outcome"], item["retryable"], int(item["attempts"])) == ("error", True, MAX_ATTEMPTS)


def test_tag_quarantine_fhir_results_and_a_results_bucket(
    classifier_handler: Any,
    pipeline_env: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3 = pipeline_env["s3"]
    bucket, results = (make_bucket(pipeline_env, with_queue=False)["bucket"] for _ in range(2))
    monkeypatch.setenv("MEDFN_QUARANTINE_MODE", "tag")
    monkeypatch.setenv("MEDFN_RESULT_FORMATS", "json,fhir")
    monkeypatch.setenv("MEDFN_RESULTS_BUCKET", results)
    source = S3Notifications(classifier_handler.function)  # built now: reads these settings
    puts = upload(pipeline_env, bucket, (DICOM, TEXT))
    for scan in (DICOM, TEXT):
        assert source(s3_event(bucket, scan.key, puts[scan.key], len(scan.data)), None)["retrying"] == 0
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=TEXT.key)["TagSet"]}
    assert tags["medfn-quarantine"] == "unprocessable-input" and "unrecognised signature" in tags["medfn-reason"]
    assert s3.get_object(Bucket=bucket, Key=TEXT.key)["Body"].read() == TEXT.data  # tagged, left in place
    assert keys_under(pipeline_env, results, "") == {
        f"results/{DICOM.key}{suffix}" for suffix in (".json", ".fhir.json", ".sr.dcm")
    }
    report = DiagnosticReport.model_validate_json(
        s3.get_object(Bucket=results, Key=f"results/{DICOM.key}.fhir.json")["Body"].read()
    )
    assert len(report.contained) == 2
    # Events for our own output are ignored, never processed into results of results.
    assert (
        source(s3_event(results, f"results/{DICOM.key}.json", {"ETag": "e", "VersionId": "v"}, 1), None)["ignored"] == 1
    )


def test_vanished_and_overwritten_objects_get_an_error_record(
    classifier_handler: Any, pipeline_env: dict[str, Any]
) -> None:
    s3 = pipeline_env["s3"]
    bucket = make_bucket(pipeline_env, with_queue=False)["bucket"]
    puts = upload(pipeline_env, bucket, (PNG, DICOM))
    stale = s3_event(bucket, DICOM.key, puts[DICOM.key], len(DICOM.data))
    stale["Records"][0]["s3"]["object"].pop("versionId")  # unversioned: only the ETag names it
    s3.put_object(Bucket=bucket, Key=DICOM.key, Body=PNG.data)  # overwritten before its event
    s3.delete_object(Bucket=bucket, Key=PNG.key, VersionId=puts[PNG.key]["VersionId"])
    sqs = SqsUploads(classifier_handler.function)
    response = sqs(
        sqs_event(
            [
                message(bucket, PNG.key, puts[PNG.key], len(PNG.data), 1, "gone"),
                {**message(bucket, DICOM.key, puts[DICOM.key], 1, 1, "stale"), "Body": json.dumps(stale)},
            ],
            "arn:aws:sqs:q",
        ),
        None,
    )
    assert response == {"batchItemFailures": []}  # nothing to retry: the objects are not there
    items = {item["key"]: item for item in status_items(pipeline_env, bucket)}
    assert items[PNG.key]["reason"] == "S3 GetObject: the object no longer exists"
    assert items[DICOM.key]["reason"] == "S3 GetObject: the object was overwritten since the event"
    assert keys_under(pipeline_env, bucket, "quarantine/") == set()


def test_poison_whose_removal_was_cut_short_is_removed_by_the_next_delivery(
    classifier_handler: Any,
    pipeline_env: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed between the error record and the delete: the redelivered event finishes the move."""
    from medfn.pipeline.s3_storage import S3Storage

    s3 = pipeline_env["s3"]
    bucket = make_bucket(pipeline_env, with_queue=False)["bucket"]
    puts = upload(pipeline_env, bucket, (TEXT,))
    event = s3_event(bucket, TEXT.key, puts[TEXT.key], len(TEXT.data))
    source = S3Notifications(classifier_handler.function)
    with monkeypatch.context() as killed:
        killed.setattr(S3Storage, "release", lambda self, ref: None)  # the process died here
        assert source(event, None)["errors"] == 1
    assert keys_under(pipeline_env, bucket, TEXT.key) == {TEXT.key}

    assert source(event, None)["duplicates"] == 1
    assert keys_under(pipeline_env, bucket, "") == {f"quarantine/{TEXT.key}"}
    versions = s3.list_object_versions(Bucket=bucket, Prefix=TEXT.key).get("Versions", [])
    assert puts[TEXT.key]["VersionId"] not in {v["VersionId"] for v in versions}  # that version, deleted
    (item,) = status_items(pipeline_env, bucket)
    assert item["outcome"] == "error"


def test_in_an_unversioned_bucket_only_the_upload_the_event_named_is_removed(
    classifier_handler: Any,
    pipeline_env: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No version to delete by: the delete is conditional on the ETag, so a newer upload under
    the same key survives a late redelivery of the old one's event, and gets its own record."""
    from medfn.pipeline.s3_storage import S3Storage

    s3 = pipeline_env["s3"]
    bucket = f"medfn-unversioned-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    source = S3Notifications(classifier_handler.function)

    def event_for(scan_key: str, body: bytes) -> dict[str, Any]:
        put = s3.put_object(Bucket=bucket, Key=scan_key, Body=body)
        return s3_event(bucket, scan_key, {"ETag": put["ETag"], "VersionId": ""}, len(body))

    assert source(event_for("first.txt", TEXT.data), None)["errors"] == 1  # plain path: moved
    assert keys_under(pipeline_env, bucket, "") == {"quarantine/first.txt"}

    old = event_for(TEXT.key, TEXT.data)
    with monkeypatch.context() as killed:
        killed.setattr(S3Storage, "release", lambda self, ref: None)
        assert source(old, None)["errors"] == 1
    newer = event_for(TEXT.key, PNG.data)  # the same key, uploaded again before the redelivery
    assert source(old, None)["duplicates"] == 1
    assert s3.get_object(Bucket=bucket, Key=TEXT.key)["Body"].read() == PNG.data
    assert source(newer, None)["results"] == 1
    outcomes = sorted((item["key"], item["outcome"]) for item in status_items(pipeline_env, bucket))
    assert outcomes == [("first.txt", "error"), (TEXT.key, "error"), (TEXT.key, "result")]


def test_an_error_that_kept_nothing_never_removes_the_same_bytes_uploaded_again(
    classifier_handler: Any,
    pipeline_env: dict[str, Any],
) -> None:
    """A scan deleted before it was read gets an error with no quarantine copy. The same bytes
    uploaded again are the same scan (same ETag): their event is a duplicate, and must leave
    the new upload where it is, since nothing of it was ever kept."""
    s3 = pipeline_env["s3"]
    bucket = make_bucket(pipeline_env, with_queue=False)["bucket"]
    source = S3Notifications(classifier_handler.function)
    first = upload(pipeline_env, bucket, (PNG,))[PNG.key]
    s3.delete_object(Bucket=bucket, Key=PNG.key, VersionId=first["VersionId"])
    assert source(s3_event(bucket, PNG.key, first, len(PNG.data)), None)["errors"] == 1

    again = upload(pipeline_env, bucket, (PNG,))[PNG.key]
    assert again["ETag"] == first["ETag"]
    assert source(s3_event(bucket, PNG.key, again, len(PNG.data)), None)["duplicates"] == 1
    assert s3.get_object(Bucket=bucket, Key=PNG.key, VersionId=again["VersionId"])["Body"].read() == PNG.data
    (item,) = status_items(pipeline_env, bucket)
    assert (item["outcome"], item.get("location", "")) == ("error", "")
