"""`medfn work`'s queue worker on moto in server mode, with real boto3 (S3, SQS, DynamoDB): scans
uploaded to the bucket are settled from its queue, one record each, several messages at once so the
model's dynamic batcher runs them together; a message that keeps failing fails alone and goes to the
dead-letter queue; a stop finishes the messages in hand and hands back any received after it."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from medfn.function import LoadedFunction, load_function
from medfn.pipeline.types import Announced, BatchSummary
from medfn.sources._uploads import UploadSource
from medfn.sources.queue_worker import QueueWorker
from tests.conftest import REPO
from tests.pipeline.s3_helpers import MAX_ATTEMPTS, keys_under, make_bucket, status_items
from tests.pipeline.test_corpus import corpus

HANG_GUARD_S = 120  # only so that a broken worker fails the test instead of hanging it


@pytest.fixture(scope="module")
def batching_function(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedFunction]:
    """scan_classifier as shipped, with [dynamic_batching] added to a copy of its model.toml."""
    root = tmp_path_factory.mktemp("work")
    shutil.copytree(REPO / "functions" / "scan_classifier", root / "functions" / "scan_classifier")
    shutil.copytree(REPO / "model_store" / "scan_classifier", root / "model_store" / "scan_classifier")
    toml = root / "model_store" / "scan_classifier" / "model.toml"
    batching = "[dynamic_batching]\nmax_queue_delay_ms = 100\n\n[version_policy]"
    toml.write_text(toml.read_text().replace("[version_policy]", batching))
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MEDFN_MODEL_STORE", raising=False)
        function = load_function(root / "functions" / "scan_classifier")
    assert function.plane.start_batchers()
    yield function
    function.plane.stop_batchers()


@pytest.fixture
def queue(pipeline_env: dict[str, Any]) -> dict[str, Any]:
    found = make_bucket(pipeline_env)
    sqs = pipeline_env["sqs"]
    sqs.set_queue_attributes(QueueUrl=found["queue_url"], Attributes={"VisibilityTimeout": "2"})
    while messages := sqs.receive_message(QueueUrl=found["queue_url"], MaxNumberOfMessages=10).get("Messages"):
        for message in messages:  # the s3:TestEvent of the notification's set-up
            sqs.delete_message(QueueUrl=found["queue_url"], ReceiptHandle=message["ReceiptHandle"])
    return {**found, "clients": pipeline_env}


def upload_scans(queue: dict[str, Any], count: int) -> list[str]:
    scans = [s for s in corpus() if s.kind == "png"][:count]
    for scan in scans:
        queue["clients"]["s3"].put_object(Bucket=queue["bucket"], Key=scan.key, Body=scan.data)
    return [s.key for s in scans]


def depth(queue: dict[str, Any], url_key: str = "queue_url") -> int:
    attributes = queue["clients"]["sqs"].get_queue_attributes(
        QueueUrl=queue[url_key],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def run_until(worker: QueueWorker, done: Callable[[], bool]) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop.is_set,))
    thread.start()
    deadline = time.monotonic() + HANG_GUARD_S
    while not done() and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    thread.join(timeout=HANG_GUARD_S)
    assert not thread.is_alive()


def test_every_scan_settles_once_and_scans_of_different_messages_share_batches(
    queue: dict[str, Any], batching_function: LoadedFunction
) -> None:
    keys = upload_scans(queue, 16)
    poison = "poison/not-an-image.png"
    queue["clients"]["s3"].put_object(Bucket=queue["bucket"], Key=poison, Body=b"not an image at all")
    batcher = batching_function.plane.get("scan_classifier").batcher
    assert batcher is not None
    before = batcher.stats.snapshot()
    worker = QueueWorker(UploadSource(batching_function).settle, queue["queue_url"], queue["clients"]["sqs"], 8, 1)
    # The batcher waits for company only once requests overlap, which on a loaded 2-core machine
    # depends on how fast each scan decodes. The first run is held a moment here, as a slow GPU
    # run would be, so that the other messages' scans queue behind it whatever the load.
    execute, first = batcher._execute, threading.Event()

    def held_first(*args: Any) -> Any:
        if not first.is_set():
            first.set()
            time.sleep(0.5)
        return execute(*args)

    batcher._execute = held_first  # type: ignore[method-assign]
    try:
        summary = worker.run(lambda: False, until_empty=True)
    finally:
        batcher._execute = execute  # type: ignore[method-assign]

    records = {item["key"]: item for item in status_items(queue["clients"], queue["bucket"])}
    assert sorted(records) == sorted([*keys, poison])  # one record each
    assert {records[k]["outcome"] for k in keys} == {"result"} and records[poison]["outcome"] == "error"
    assert keys_under(queue["clients"], queue["bucket"], "results/") == {f"results/{k}.json" for k in keys}
    # every message deleted: the 17 uploads, and the events of our own results and quarantine copy (ignored)
    assert summary.received == summary.deleted >= 17 and summary.left == 0
    assert (summary.scans.results, summary.scans.errors) == (16, 1)
    assert depth(queue) == 0 and depth(queue, "dlq_url") == 0
    after = batcher.stats.snapshot()
    assert after.requests - before.requests == 16
    assert after.batches - before.batches < 16 and after.max_batch_size > 1  # scans of several messages, one run


def test_a_message_that_keeps_failing_fails_alone_and_goes_to_the_dead_letter_queue(
    queue: dict[str, Any], batching_function: LoadedFunction, flaky_s3: Any
) -> None:
    keys = upload_scans(queue, 4)
    flaky_s3.fail(keys[1])  # S3 never serves this one: transient, retried, then given up
    worker = QueueWorker(UploadSource(batching_function).settle, queue["queue_url"], queue["clients"]["sqs"], 4, 1)

    run_until(worker, lambda: depth(queue, "dlq_url") == 1 and depth(queue) == 0)

    records = {item["key"]: item for item in status_items(queue["clients"], queue["bucket"])}
    assert {k: records[k]["outcome"] for k in keys} == dict.fromkeys(keys, "result") | {keys[1]: "error"}
    assert records[keys[1]]["retryable"] is True and int(records[keys[1]]["attempts"]) == MAX_ATTEMPTS
    assert worker.summary.left == MAX_ATTEMPTS  # each delivery of it left for SQS; the others deleted
    assert worker.summary.scans.results == len(keys) - 1  # and the others' messages were deleted once settled
    assert worker.summary.deleted == worker.summary.received - MAX_ATTEMPTS


def test_a_stop_finishes_the_message_in_hand_and_hands_back_what_came_after(
    queue: dict[str, Any], batching_function: LoadedFunction
) -> None:
    keys = upload_scans(queue, 2)
    source = UploadSource(batching_function)
    stop = threading.Event()

    def settle_then_stop(announced: Announced, attempt: int) -> BatchSummary:
        stop.set()  # SIGTERM arrives while the first message is being settled
        time.sleep(0.5)
        return source.settle(announced, attempt)

    worker = QueueWorker(settle_then_stop, queue["queue_url"], queue["clients"]["sqs"], concurrency=1, wait_s=1)
    summary = worker.run(stop.is_set)

    assert (summary.received, summary.deleted) == (1, 1)  # one at a time: the second was never taken
    records = status_items(queue["clients"], queue["bucket"])
    assert [(r["key"], r["outcome"]) for r in records] == [(keys[0], "result")]
    assert depth(queue) >= 1  # the other scan's message waits for the next worker (and our result's event)


def test_received_after_a_stop_is_handed_back_at_once(queue: dict[str, Any], batching_function: LoadedFunction) -> None:
    upload_scans(queue, 3)
    calls = 0

    def stop() -> bool:  # the stop comes while the first receive is in flight
        nonlocal calls
        calls += 1
        return calls > 1

    worker = QueueWorker(UploadSource(batching_function).settle, queue["queue_url"], queue["clients"]["sqs"], 8, 1)
    summary = worker.run(stop)
    assert summary.received == summary.released == 3 and summary.deleted == 0
    messages = queue["clients"]["sqs"].receive_message(QueueUrl=queue["queue_url"], MaxNumberOfMessages=10)
    assert len(messages.get("Messages", [])) == 3  # visible again at once, not after the timeout


def test_a_long_settle_has_its_visibility_extended(queue: dict[str, Any], batching_function: LoadedFunction) -> None:
    """A series can take minutes: the message is kept invisible while it is in hand (a fake clock)."""
    upload_scans(queue, 1)
    now = [0.0]
    release = threading.Event()
    source = UploadSource(batching_function)

    def slow(announced: Announced, attempt: int) -> BatchSummary:
        release.wait(HANG_GUARD_S)
        return source.settle(announced, attempt)

    sqs = queue["clients"]["sqs"]
    worker = QueueWorker(slow, queue["queue_url"], sqs, concurrency=1, wait_s=1, clock=lambda: now[0])
    thread = threading.Thread(target=worker.run, args=(release.is_set,))
    thread.start()
    deadline = time.monotonic() + HANG_GUARD_S
    while worker.summary.received == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    now[0] = 1.5  # of a 2 s visibility timeout: past half, so the next pass extends it
    while worker.summary.extended == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    release.set()
    thread.join(timeout=HANG_GUARD_S)
    assert worker.summary.extended >= 1 and worker.summary.deleted == 1


def test_medfn_work_refuses_cuda_without_a_cuda_onnxruntime(capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime as ort

    from medfn.cli import main

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime offers CUDA: the refusal is for the CPU wheel")
    code = main(["work", "--queue-url", "http://127.0.0.1:1/q", "--function", "scan_classifier", "--device", "cuda"])
    assert code == 2
    assert "no CUDAExecutionProvider" in capsys.readouterr().err


def test_messages_that_name_nothing_are_deleted_as_ignored(
    queue: dict[str, Any], batching_function: LoadedFunction
) -> None:
    queue["clients"]["sqs"].send_message(QueueUrl=queue["queue_url"], MessageBody="not json")
    queue["clients"]["sqs"].send_message(QueueUrl=queue["queue_url"], MessageBody=json.dumps({"Event": "s3:TestEvent"}))
    worker = QueueWorker(UploadSource(batching_function).settle, queue["queue_url"], queue["clients"]["sqs"], 4, 1)
    summary = worker.run(lambda: False, until_empty=True)
    assert (summary.deleted, summary.scans.ignored) == (2, 2) and depth(queue) == 0


def test_the_command_drains_a_queue(
    queue: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from medfn.cli import main

    keys = upload_scans(queue, 3)
    monkeypatch.setenv("MEDFN_MODEL_STORE", str(REPO / "model_store"))
    monkeypatch.setenv("MEDFN_PROVIDERS", "CPUExecutionProvider")  # restored after: --device sets it
    monkeypatch.setattr(logging.root, "handlers", [])  # the command's basicConfig, undone after
    code = main(["work", "--queue-url", queue["queue_url"], "--function", "scan_classifier", "--device", "cpu",
                 "--wait-s", "1", "--until-empty"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["results"] == 3 and summary["deleted"] >= 3 and summary["left_for_redelivery"] == 0
    assert len(status_items(queue["clients"], queue["bucket"])) == len(keys)
