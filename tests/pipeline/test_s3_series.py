"""The series function in AWS, on moto in server mode with real boto3 (S3, SQS, DynamoDB): instances
arrive through the queue, the stability check is a delayed message back to it, and redelivery or two
concurrent workers never make a second result set; a late instance supersedes."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from pydicom.uid import generate_uid

from medfn.lambda_handler import make_handler
from tests.conftest import REPO, create_series_table
from tests.pipeline.s3_helpers import keys_under, make_bucket, sqs_event, status_items
from tests.pipeline.series_helpers import PhantomSeries, extra_slice, phantom_series

SERIES_TABLE = "medfn-series"
FUNCTION = "ct_nodule_volume"
HANDLER = str(REPO / "functions" / FUNCTION / "handler.py")


@pytest.fixture
def series_env(pipeline_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    queue = make_bucket(pipeline_env)
    # A failed delivery (two workers' arrivals conflicting on one series record) comes back soon
    pipeline_env["sqs"].set_queue_attributes(QueueUrl=queue["queue_url"], Attributes={"VisibilityTimeout": "2"})
    create_series_table(pipeline_env["dynamodb"], SERIES_TABLE)
    monkeypatch.setenv("MEDFN_SERIES_TABLE", SERIES_TABLE)
    monkeypatch.setenv("MEDFN_SERIES_SETTLE_S", "1")
    monkeypatch.setenv("MEDFN_SERIES_QUEUE_URL", queue["queue_url"])
    return {"clients": pipeline_env, "queue": queue}


def upload(env: dict[str, Any], series: PhantomSeries, name: str, data: bytes) -> None:
    key = f"{FUNCTION}/{series.series_uid[-8:]}/{name}"
    env["clients"]["s3"].put_object(Bucket=env["queue"]["bucket"], Key=key, Body=data)


def consume(handler: Any, env: dict[str, Any], quiet_s: float = 5.0) -> list[dict[str, Any]]:
    """Lambda's event source mapping: batches until the queue (delayed checks included) stays empty
    for `quiet_s`. Returns the handler's responses."""
    sqs, queue = env["clients"]["sqs"], env["queue"]
    responses, quiet_since = [], time.monotonic()
    while time.monotonic() - quiet_since < quiet_s:
        messages = sqs.receive_message(
            QueueUrl=queue["queue_url"], MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            continue
        quiet_since = time.monotonic()
        response = handler(sqs_event(messages, queue["queue_arn"]), None)
        responses.append(response)
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        done = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(messages)
            if m["MessageId"] not in failed
        ]
        if done:
            sqs.delete_message_batch(QueueUrl=queue["queue_url"], Entries=done)
    return responses


def series_records(env: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    plain = TypeDeserializer().deserialize
    items = env["clients"]["dynamodb"].scan(TableName="medfn-status")["Items"]
    found = [{k: plain(v) for k, v in item.items()} for item in items]
    return {item["key"]: item for item in found if item["object_uri"].startswith("series://")}


def test_two_workers_one_result_set_per_series_and_a_late_instance_supersedes(series_env: dict[str, Any]) -> None:
    study = generate_uid()
    series = [phantom_series(41, 0, study), phantom_series(41, 1, study)]
    for s in series:
        for i, data in enumerate(s.files):
            upload(series_env, s, f"{i:03d}.dcm", data)
    upload(series_env, series[0], "again.dcm", series[0].files[3])  # a duplicate instance
    workers = [make_handler(HANDLER), make_handler(HANDLER)]  # two concurrent Lambda environments
    threads = [threading.Thread(target=consume, args=(w, series_env)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)

    records = series_records(series_env)
    keys = {f"{FUNCTION}/{s.study_uid}/{s.series_uid}": s for s in series}
    assert set(records) == set(keys)
    for key, s in keys.items():
        record = records[key]
        assert record["outcome"] == "result" and int(record["generation"]) == len(s.files)
        written = keys_under(series_env["clients"], series_env["queue"]["bucket"], f"results/{key}/")
        assert written == {f"results/{key}/{name}" for name in ("result.json", "seg.dcm", "sr.dcm")}
    assert not [i for i in status_items(series_env["clients"], series_env["queue"]["bucket"])]  # no instance errors

    # Redelivery of every check ever sent changes nothing: each series is answered
    first = series[0]
    key = f"{FUNCTION}/{first.study_uid}/{first.series_uid}"
    before = records[key]
    check = {"medfn": "series-check", "series": key, "generation": len(first.files)}
    series_env["clients"]["sqs"].send_message(QueueUrl=series_env["queue"]["queue_url"], MessageBody=json.dumps(check))
    consume(workers[0], series_env, quiet_s=2.0)
    assert series_records(series_env)[key] == before

    # A late instance: the series is answered again; the new record supersedes, one record still
    upload(series_env, first, "late.dcm", extra_slice(first))
    consume(workers[1], series_env)
    after = series_records(series_env)[key]
    assert after["outcome"] == "result" and int(after["generation"]) == len(first.files) + 1
    assert int(after["supersedes"]) == len(first.files) and int(after["instances"]) == len(first.files) + 1
    body = series_env["clients"]["s3"].get_object(
        Bucket=series_env["queue"]["bucket"], Key=f"results/{key}/result.json"
    )
    result = json.loads(body["Body"].read())
    assert result["series"]["generation"] == len(first.files) + 1 and result["series"]["slices"] == len(first.files) + 1
    assert len(series_records(series_env)) == 2
