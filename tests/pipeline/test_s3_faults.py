"""The watcher's faults where S3 has them, against the moto server: an upload that stalls
half-way is never read, and two consumers of one queue leave one record per scan."""

from __future__ import annotations

import json
import threading
from typing import Any

from medfn.lambda_handler import make_handler
from tests.conftest import REPO
from tests.pipeline.s3_helpers import drain_queue, keys_under, make_bucket, s3_event, status_items, upload
from tests.pipeline.test_corpus import corpus

PNG = next(s for s in corpus() if s.kind == "png")


def test_a_stalled_multipart_upload_is_never_read(classifier_handler: Any, pipeline_env: dict[str, Any]) -> None:
    """S3 announces an object only when its upload completes: half an upload is nothing to read."""
    made = make_bucket(pipeline_env)
    s3 = pipeline_env["s3"]
    started = s3.create_multipart_upload(Bucket=made["bucket"], Key="slow.png", ContentType="image/png")
    part = s3.upload_part(
        Bucket=made["bucket"], Key="slow.png", UploadId=started["UploadId"], PartNumber=1, Body=PNG.data
    )  # the sender stalls here, before completing
    assert drain_queue(classifier_handler, pipeline_env, made) == []
    assert status_items(pipeline_env, made["bucket"]) == []
    s3.complete_multipart_upload(
        Bucket=made["bucket"],
        Key="slow.png",
        UploadId=started["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    assert drain_queue(classifier_handler, pipeline_env, made) == []
    (item,) = status_items(pipeline_env, made["bucket"])
    assert item["outcome"] == "result"


def test_two_consumers_of_one_queue_leave_one_record_per_scan(pipeline_env: dict[str, Any]) -> None:
    """Two Lambda environments draining the same queue at once: each scan is settled once."""
    made = make_bucket(pipeline_env)
    scans = tuple(type(PNG)(f"pair/{i}.png", PNG.data, PNG.kind) for i in range(12))
    upload(pipeline_env, made["bucket"], scans)
    handlers = [make_handler(str(REPO / "functions" / "scan_classifier" / "handler.py")) for _ in range(2)]
    failures: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda h=h: failures.append(drain_queue(h, pipeline_env, made))) for h in handlers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == [[], []]
    items = status_items(pipeline_env, made["bucket"])
    assert sorted(item["key"] for item in items) == sorted(s.key for s in scans)  # one record each
    assert all(item["outcome"] == "result" for item in items)
    assert keys_under(pipeline_env, made["bucket"], "results/") == {f"results/{s.key}.json" for s in scans}


def test_an_upload_slot_buys_one_scan(classifier_handler: Any, pipeline_env: dict[str, Any]) -> None:
    """A second upload under a slot's key (a new version of it) is refused; the slot's first scan
    keeps its result. An object that no slot made may be uploaded again, as before."""
    bucket = make_bucket(pipeline_env, with_queue=False)["bucket"]
    s3 = pipeline_env["s3"]
    slot = "scan_classifier/2026/12/07/0123456789abcdef0123456789abcdef.png"
    by_hand = "scan_classifier/by-hand.png"
    for key, metadata in ((slot, {"medfn-key-id": "clinic-a"}), (by_hand, {})):
        for n in range(2):  # other bytes each time: the same bytes again would be the same scan
            body = PNG.data + b"\0" * n
            put = s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)  # as a slot's POST keeps it
            # S3's own event for this version (moto's notifications leave the version out)
            classifier_handler(s3_event(bucket, key, put, len(body)), None)
    items = status_items(pipeline_env, bucket)
    slot_items = sorted((i["outcome"], i.get("reason", "")) for i in items if i["key"] == slot)
    assert [outcome for outcome, _ in slot_items] == ["error", "result"]
    assert "slot was used before" in slot_items[0][1]
    assert [i["outcome"] for i in items if i["key"] == by_hand] == ["result", "result"]


def test_a_slot_scan_is_recorded_and_billed_to_the_key_that_asked(
    classifier_handler: Any, pipeline_env: dict[str, Any], capsys: Any
) -> None:
    """The key id the slot's POST kept as metadata is in the status record and in the EMF
    metering line, as an HTTP predict call's would be."""
    bucket = make_bucket(pipeline_env, with_queue=False)["bucket"]
    key = "scan_classifier/2026/12/07/00000000000000000000000000000001.png"
    put = pipeline_env["s3"].put_object(Bucket=bucket, Key=key, Body=PNG.data, Metadata={"medfn-key-id": "clinic-b"})
    capsys.readouterr()
    classifier_handler(s3_event(bucket, key, put, len(PNG.data)), None)
    (item,) = status_items(pipeline_env, bucket)
    assert item["outcome"] == "result" and item["key_id"] == "clinic-b"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (usage,) = [line for line in lines if "_aws" in line]
    assert usage["ApiKeyId"] == "clinic-b" and usage["BilledUnits"] == 1 and usage["Model"] == "scan_classifier"


def test_a_slot_whose_first_scan_was_quarantined_takes_no_second(
    classifier_handler: Any, pipeline_env: dict[str, Any]
) -> None:
    """Move-mode quarantine removes the first upload's version; the slot is still spent: the status
    table remembers the first upload, so the second is refused, not analysed."""
    bucket = make_bucket(pipeline_env, with_queue=False)["bucket"]
    s3, key = pipeline_env["s3"], "scan_classifier/2026/12/07/00000000000000000000000000000002.png"
    for body in (b"not an image", PNG.data):
        put = s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"medfn-key-id": "clinic-c"})
        classifier_handler(s3_event(bucket, key, put, len(body)), None)
    reasons = sorted(i.get("reason", "") for i in status_items(pipeline_env, bucket))
    assert len(reasons) == 2 and "unrecognised signature" in reasons[0] and "slot was used before" in reasons[1]
    assert keys_under(pipeline_env, bucket, "results/") == set()
