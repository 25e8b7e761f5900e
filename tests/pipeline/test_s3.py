"""Uploads to result against a real S3 API: moto in server mode, real boto3 clients over HTTP.

A mixed backlog (>= 50 scans, poison included) is uploaded to a versioned bucket whose
notifications go to an SQS queue with a dead-letter queue. Events then arrive the three ways
AWS delivers them (direct S3 notifications, EventBridge, SQS batches), overlapping and
repeated, while a proxy makes S3 fail for some objects. At the end every object has exactly
one record, results and quarantine hold exactly the right keys, and no log line has PHI.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.pipeline.flaky_s3 import FlakyS3
from tests.pipeline.s3_helpers import (
    MAX_ATTEMPTS,
    body_key,
    drain_queue,
    eventbridge_event,
    invoke_async,
    keys_under,
    make_bucket,
    s3_event,
    status_items,
    upload,
)
from tests.pipeline.test_corpus import corpus, demographics, result_files


def test_mixed_backlog_with_faults_ends_with_one_record_per_scan(
    classifier_handler: Any,
    pipeline_env: dict[str, Any],
    flaky_s3: FlakyS3,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clients, scans = pipeline_env, corpus()
    queue = make_bucket(clients)
    bucket = queue["bucket"]
    puts = upload(clients, bucket, scans)
    by_key = {s.key: s for s in scans}
    flaky_s3.fail("png/scan-001.png", times=1)  # S3 recovers: the retry succeeds
    flaky_s3.fail("dicom/scan-002.dcm", times=2)
    flaky_s3.fail("dicom/scan-003.dcm")  # never recovers: error record, then the DLQ

    # A third arrives as direct notifications, a third via EventBridge, all again via SQS.
    keys = [s.key for s in scans]
    for key in keys[0::3]:
        invoke_async(classifier_handler, s3_event(bucket, key, puts[key], len(by_key[key].data)))
    for key in keys[1::3]:
        invoke_async(classifier_handler, eventbridge_event(bucket, key, puts[key], len(by_key[key].data)))
    failed_bodies = drain_queue(classifier_handler, clients, queue)
    for key in keys[0:12]:  # redelivered after being settled
        classifier_handler(s3_event(bucket, key, puts[key], len(by_key[key].data)), None)
        classifier_handler(eventbridge_event(bucket, key, puts[key], len(by_key[key].data)), None)

    items = status_items(clients, bucket)
    settled = [item for item in items if "outcome" in item]
    assert sorted(item["key"] for item in settled) == sorted(keys)  # one record per scan, no more
    for item in settled:
        assert item["object_version"] == f"etag:{puts[item['key']]['ETag'].strip(chr(34))}"
        expected = "error" if by_key[item["key"]].poison or item["key"] == "dicom/scan-003.dcm" else "result"
        assert item["outcome"] == expected, (item["key"], item.get("reason"))

    poison = {s.key for s in scans if s.poison}
    good = set(keys) - poison - {"dicom/scan-003.dcm"}
    assert keys_under(clients, bucket, "results/") == result_files([by_key[k] for k in good], "results/")
    assert keys_under(clients, bucket, "quarantine/") == {f"quarantine/{k}" for k in poison}
    assert (
        keys_under(clients, bucket, "")
        - keys_under(clients, bucket, "results/")
        - keys_under(clients, bucket, "quarantine/")
        == set(keys) - poison
    )  # poison moved out
    document = json.loads(
        clients["s3"].get_object(Bucket=bucket, Key="results/ward 7/chest+pa (0).png.json")["Body"].read()
    )
    assert document["source"]["key"] == "ward 7/chest+pa (0).png" and document["prediction"]["label"]

    reasons = {item["key"]: item for item in settled if item["outcome"] == "error"}
    assert reasons["poison/jpeg lossless.dcm"]["code"] == "unsupported-media-type"
    assert "JPEG Lossless" in reasons["poison/jpeg lossless.dcm"]["reason"]
    assert reasons["poison/empty.dcm"]["reason"] == "object is empty (0 bytes)"
    never_recovered = reasons["dicom/scan-003.dcm"]
    assert never_recovered["retryable"] and never_recovered["code"] == "storage-unavailable"
    assert never_recovered["reason"].startswith(f"gave up after {MAX_ATTEMPTS} attempts")
    # Only the scans S3 failed for were ever reported as batch item failures...
    assert {body_key(b) for b in failed_bodies} <= {"png/scan-001.png", "dicom/scan-002.dcm", "dicom/scan-003.dcm"}
    # ...and only the one that never recovered ended in the dead-letter queue.
    dead = clients["sqs"].receive_message(QueueUrl=queue["dlq_url"], MaxNumberOfMessages=10)["Messages"]
    assert [body_key(m["Body"]) for m in dead] == ["dicom/scan-003.dcm"]

    # No PHI anywhere: not in logs, not in records, not in our result documents. (A scan's DICOM SR
    # carries its patient module by design: the PACS files it by that; tests/studies checks it is
    # only there.)
    written = (
        caplog.text
        + json.dumps(items, default=str)
        + "".join(
            clients["s3"].get_object(Bucket=bucket, Key=k)["Body"].read().decode()
            for k in keys_under(clients, bucket, "results/")
            if k.endswith(".json")
        )
    )
    leaked = sorted(value for value in demographics() if value in written)
    assert not leaked, f"PHI in logs or records: {leaked}"
