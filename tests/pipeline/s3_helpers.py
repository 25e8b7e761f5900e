"""What the S3 pipeline tests share: a moto-backed upload bucket with its queue, events of each
shape AWS delivers, and ways to drive the handler and read back what it left."""

from __future__ import annotations

import copy
import json
from itertools import count
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from medfn.errors import TransientFailure
from tests.conftest import load_event
from tests.pipeline.test_corpus import Scan

STATUS_TABLE = "medfn-status"
MAX_ATTEMPTS = 3
_buckets = count()


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
