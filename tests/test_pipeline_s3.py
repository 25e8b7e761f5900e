"""Uploads to result against a real S3 API: moto in server mode, real boto3 clients over HTTP.

A mixed backlog (>= 50 scans, poison included) is uploaded to a versioned bucket whose
notifications go to an SQS queue with a dead-letter queue. Events then arrive the three ways
AWS delivers them (direct S3 notifications, EventBridge, SQS batches), overlapping and
repeated, while a proxy makes S3 fail for some objects. At the end every object has exactly
one record, results and quarantine hold exactly the right keys, and no log line has PHI.
"""

from __future__ import annotations

import copy
import json
import logging
from itertools import count
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import boto3
import pytest

from medfn.errors import TransientFailure
from tests.conftest import load_event
from tests.test_pipeline_corpus import Scan, corpus, demographics
from tests.test_pipeline_faults import FlakyS3, flaky_s3  # noqa: F401  (fixture)

STATUS_TABLE = "medfn-status"
MAX_ATTEMPTS = 3
_buckets = count()


@pytest.fixture
def pipeline_env(aws_env: str, flaky_s3: FlakyS3, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:  # noqa: F811
    """The function's environment in AWS, S3 behind the fault proxy; clients for the test itself."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", flaky_s3.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own retries would hide the faults
    monkeypatch.setenv("MEDFN_STATUS_TABLE", STATUS_TABLE)
    monkeypatch.setenv("MEDFN_MAX_ATTEMPTS", str(MAX_ATTEMPTS))
    clients = {name: boto3.client(name, endpoint_url=aws_env) for name in ("s3", "dynamodb", "sqs")}
    if STATUS_TABLE not in clients["dynamodb"].list_tables()["TableNames"]:
        clients["dynamodb"].create_table(
            TableName=STATUS_TABLE,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[
                {"AttributeName": "object_uri", "KeyType": "HASH"},
                {"AttributeName": "object_version", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "object_uri", "AttributeType": "S"},
                {"AttributeName": "object_version", "AttributeType": "S"},
            ],
        )
    flaky_s3.clear()
    return clients


def make_bucket(clients: dict[str, Any], with_queue: bool = True) -> dict[str, str]:
    """A versioned upload bucket; with_queue: its ObjectCreated notifications go to SQS + DLQ."""
    n = next(_buckets)
    s3, sqs = clients["s3"], clients["sqs"]
    bucket = f"medfn-uploads-{n}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if not with_queue:
        return {"bucket": bucket}
    dlq_url = sqs.create_queue(QueueName=f"medfn-uploads-dlq-{n}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=f"medfn-uploads-{n}",
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_ATTEMPTS)}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}],
        },
    )
    return {"bucket": bucket, "queue_url": queue_url, "queue_arn": queue_arn, "dlq_url": dlq_url}


def upload(clients: dict[str, Any], bucket: str, scans: tuple[Scan, ...]) -> dict[str, dict[str, Any]]:
    """Put every scan; key -> its PutObject response (ETag, VersionId)."""
    return {s.key: clients["s3"].put_object(Bucket=bucket, Key=s.key, Body=s.data) for s in scans}


# -- events in the shapes AWS documents (tests/events/*.json), filled in for one object --------


def s3_event(bucket: str, key: str, put: dict[str, Any], size: int) -> dict[str, Any]:
    event = load_event("s3_object_created")
    record = event["Records"][0]["s3"]
    record["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
    record["object"].update(
        key=quote_plus(key, safe="/"), size=size, eTag=put["ETag"].strip('"'), versionId=put["VersionId"]
    )
    return event


def eventbridge_event(bucket: str, key: str, put: dict[str, Any], size: int) -> dict[str, Any]:
    event = load_event("eventbridge_s3_object_created")
    event["resources"] = [f"arn:aws:s3:::{bucket}"]
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"].update(
        {"key": quote_plus(key, safe="/"), "size": size, "etag": put["ETag"].strip('"'), "version-id": put["VersionId"]}
    )
    return event


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """What Lambda's SQS event source mapping hands the function for these received messages."""
    template = load_event("sqs_s3_object_created")["Records"][0]
    records = []
    for message in messages:
        record = copy.deepcopy(template)
        record.update(
            messageId=message["MessageId"],
            receiptHandle=message["ReceiptHandle"],
            body=message["Body"],
            md5OfBody=message["MD5OfBody"],
            eventSourceARN=queue_arn,
        )
        record["attributes"].update({k: v for k, v in message["Attributes"].items() if k in record["attributes"]})
        records.append(record)
    return {"Records": records}


def invoke_async(handler: Any, event: dict[str, Any], attempts: int = MAX_ATTEMPTS) -> None:
    """Lambda's asynchronous invoke: an error is retried (twice by default), then given up."""
    for _ in range(attempts):
        try:
            handler(event, None)
            return
        except TransientFailure:
            continue


def drain_queue(handler: Any, clients: dict[str, Any], queue: dict[str, str]) -> list[str]:
    """Lambda's SQS event source mapping: batches of 10, failed messages come back (receive
    count + 1) until the redrive policy moves them to the DLQ. Returns the failed bodies."""
    sqs, failed_bodies, idle = clients["sqs"], [], 0
    while idle < 2:
        messages = sqs.receive_message(
            QueueUrl=queue["queue_url"], MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"]
        ).get("Messages", [])
        idle = idle + 1 if not messages else 0
        if not messages:
            continue
        response = handler(sqs_event(messages, queue["queue_arn"]), None)
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        failed_bodies += [m["Body"] for m in messages if m["MessageId"] in failed]
        done = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(messages)
            if m["MessageId"] not in failed
        ]
        if done:
            sqs.delete_message_batch(QueueUrl=queue["queue_url"], Entries=done)
    return failed_bodies


def body_key(body: str) -> str:
    """The decoded object key an S3 notification in an SQS message body names."""
    return unquote_plus(json.loads(body)["Records"][0]["s3"]["object"]["key"])


def status_items(clients: dict[str, Any], bucket: str) -> list[dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    plain = TypeDeserializer().deserialize
    pages = clients["dynamodb"].get_paginator("scan").paginate(TableName=STATUS_TABLE)
    items = [{k: plain(v) for k, v in item.items()} for page in pages for item in page["Items"]]
    return [item for item in items if item["object_uri"].startswith(f"s3://{bucket}/")]


def keys_under(clients: dict[str, Any], bucket: str, prefix: str) -> set[str]:
    pages = clients["s3"].get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


# -- the scenario -------------------------------------------------------------------------


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
    assert keys_under(clients, bucket, "results/") == {f"results/{k}.json" for k in good}
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
    assert document["source"]["key"] == "ward 7/chest+pa (0).png" and document["prediction"]["top_label"]

    reasons = {item["key"]: item for item in settled if item["outcome"] == "error"}
    assert reasons["poison/jpeg ls.dcm"]["code"] == "unsupported-media-type"
    assert "JPEG-LS" in reasons["poison/jpeg ls.dcm"]["reason"]
    assert reasons["poison/empty.dcm"]["reason"] == "object is empty (0 bytes)"
    never_recovered = reasons["dicom/scan-003.dcm"]
    assert never_recovered["retryable"] and never_recovered["code"] == "storage-unavailable"
    assert never_recovered["reason"].startswith(f"gave up after {MAX_ATTEMPTS} attempts")
    # Only the scans S3 failed for were ever reported as batch item failures...
    assert {body_key(b) for b in failed_bodies} <= {"png/scan-001.png", "dicom/scan-002.dcm", "dicom/scan-003.dcm"}
    # ...and only the one that never recovered ended in the dead-letter queue.
    dead = clients["sqs"].receive_message(QueueUrl=queue["dlq_url"], MaxNumberOfMessages=10)["Messages"]
    assert [body_key(m["Body"]) for m in dead] == ["dicom/scan-003.dcm"]

    # No PHI anywhere: not in logs, not in records, not in result documents.
    written = (
        caplog.text
        + json.dumps(items, default=str)
        + "".join(
            clients["s3"].get_object(Bucket=bucket, Key=k)["Body"].read().decode()
            for k in keys_under(clients, bucket, "results/")
        )
    )
    leaked = sorted(value for value in demographics() if value in written)
    assert not leaked, f"PHI in logs or records: {leaked}"
