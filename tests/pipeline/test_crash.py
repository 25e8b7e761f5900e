"""Faults in the middle of a backlog: every scan still ends with exactly one record.

- `medfn watch` as a real process, SIGKILLed (no chance to clean up) twice while working
  through a backlog, then restarted with `--once`: no scan recorded twice or never, no
  half-written result or quarantine copy, no temp file left behind.
- S3 down for a while (503s, 500s, dropped connections, then only writes failing) while an
  SQS backlog goes through the Lambda handler with SQS's redelivery: what recovers in time
  gets its result, what runs out of attempts is in the dead-letter queue with an error
  record, and a redrive of that queue settles the rest.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tests.pipeline.flaky_s3 import FlakyS3
from tests.pipeline.s3_helpers import (
    MAX_ATTEMPTS,
    body_key,
    keys_under,
    make_bucket,
    sqs_event,
    status_items,
    upload,
)
from tests.pipeline.test_corpus import Scan, corpus, result_files

# -- the worker killed mid-backlog ----------------------------------------------------------

COPIES = 3  # the corpus three times over (159 scans): about a third of a second of work


def backlog() -> list[Scan]:
    return [Scan(f"copy{n}/{s.key}", s.data, s.kind) for n in range(COPIES) for s in corpus()]


def start_watch(root: Path, *options: str) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "medfn.cli",
        "watch",
        str(root),
        "--function",
        "scan_classifier",
        "--functions",
        str(REPO / "functions"),
        "--no-progress",
        *options,
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def recorded(database: Path) -> int:
    """Settled records, read as another process would while the watcher writes (WAL)."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM scans WHERE outcome IS NOT NULL").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet, or its table not yet
        return 0


def kill_once_recorded(process: subprocess.Popen[str], database: Path, at_least: int, timeout_s: float = 30) -> int:
    """SIGKILL the watcher as soon as `at_least` scans have records; how many had when it died."""
    deadline = time.monotonic() + timeout_s
    while recorded(database) < at_least:
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the watcher recorded too little in time"
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    return recorded(database)


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def key_is_poison(scans: list[Scan], key: str) -> bool:
    return next(s for s in scans if s.key == key).poison


def test_killed_twice_mid_backlog_then_restarted(tmp_path: Path) -> None:
    scans = backlog()
    for scan in scans:
        path = tmp_path / "incoming" / scan.key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(scan.data)
    database = tmp_path / "status.sqlite3"

    first = kill_once_recorded(start_watch(tmp_path, "--once"), database, at_least=10)
    # Restarted as a service, watching: killed again, further along.
    second = kill_once_recorded(start_watch(tmp_path, "--settle", "0", "--poll", "0.05"), database, at_least=first + 40)
    assert 0 < first < second < len(scans), (first, second)

    left = files_under(tmp_path / "incoming")  # poison already quarantined is gone from here
    finish = start_watch(tmp_path, "--once")
    out, err = finish.communicate(timeout=60)
    assert finish.returncode == 0, err[-2000:]
    summary = json.loads(out.splitlines()[-1])
    # Every file left was looked at; exactly the ones the killed runs had not recorded got a record.
    assert summary["results"] + summary["errors"] + summary["duplicates"] == len(left)
    assert summary["results"] + summary["errors"] == len(scans) - second
    assert summary["retrying"] == 0

    db = sqlite3.connect(database)
    rows = db.execute("SELECT object_uri, outcome, retryable, record FROM scans").fetchall()
    db.close()
    assert Counter(json.loads(r[3])["key"] for r in rows) == Counter(s.key for s in scans)  # one each
    for _, outcome, retryable, record in rows:
        key = json.loads(record)["key"]
        assert (outcome, retryable) == ("error" if key_is_poison(scans, key) else "result", 0), key

    good = {s.key for s in scans if not s.poison}
    poison = {s.key: s.data for s in scans if s.poison}
    assert files_under(tmp_path / "results") == result_files(s for s in scans if not s.poison)
    for key in good:  # each one whole: a rename put it there, never a write in place
        document = json.loads((tmp_path / "results" / f"{key}.json").read_bytes())
        assert document["source"]["key"] == key and document["prediction"]["label"]
    assert files_under(tmp_path / "quarantine") == set(poison) | {f"{k}.reason.json" for k in poison}
    for key, data in poison.items():
        assert (tmp_path / "quarantine" / key).read_bytes() == data
        assert json.loads((tmp_path / "quarantine" / f"{key}.reason.json").read_bytes())["code"]
    assert files_under(tmp_path / "incoming") == good  # the poison released, once quarantined
    # The partial files the kills left were removed when the next watcher started.
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]


def test_poison_recorded_but_not_removed_is_removed_on_restart(tmp_path: Path, classifier_handler: Any) -> None:
    """The window the kill above lands in only sometimes: killed between the record and the removal."""
    from medfn.pipeline.folder_storage import FolderStorage
    from medfn.pipeline.folder_watch import FolderWatch
    from medfn.pipeline.settings import PipelineSettings
    from medfn.pipeline.sqlite_status import SqliteStatusTable
    from medfn.pipeline.worker import ScanWorker

    poison = next(s for s in corpus() if s.kind == "text")
    (tmp_path / "incoming").mkdir()
    (tmp_path / "incoming" / "notes.txt").write_bytes(poison.data)

    def watcher(storage: FolderStorage) -> FolderWatch:
        status = SqliteStatusTable(tmp_path / "status.sqlite3")
        worker = ScanWorker(classifier_handler.function.plane, "scan_classifier", storage, status, PipelineSettings())
        return FolderWatch(storage=storage, worker=worker, progress=False)

    killed = FolderStorage(tmp_path)
    killed.release = lambda ref: None  # type: ignore[method-assign]  # the process died here
    assert watcher(killed).run(once=True).errors == 1
    assert files_under(tmp_path / "incoming") == {"notes.txt"}

    restarted = watcher(FolderStorage(tmp_path)).run(once=True)
    assert (restarted.errors, restarted.duplicates) == (0, 1)
    assert files_under(tmp_path / "incoming") == set()
    assert files_under(tmp_path / "quarantine") == {"notes.txt", "notes.txt.reason.json"}


def test_partial_files_of_a_killed_writer_are_removed_at_the_next_start(tmp_path: Path) -> None:
    from medfn.pipeline.folder_storage import FolderStorage

    (tmp_path / ".partial").mkdir()
    (tmp_path / ".partial" / "abandoned.part").write_bytes(b'{"half": ')
    assert list(FolderStorage(tmp_path).partial.iterdir()) == []


# -- S3 down for a while, an SQS backlog redelivered ------------------------------------------

Weather = Callable[[int, int], None]  # (round, batch) -> sets S3's state before that batch


def deliver_in_rounds(handler: Any, clients: dict[str, Any], queue: dict[str, str], weather: Weather) -> Counter[str]:
    """Lambda's SQS event source mapping over moto's queue, with SQS's visibility timeout.

    A round receives every visible message, in batches of 10; a message the handler reports
    as a batchItemFailure stays hidden until the round is over (its visibility timeout ran
    out), and SQS moves it to the dead-letter queue when received past maxReceiveCount.
    Returns how many times each key failed.
    """
    sqs, failures = clients["sqs"], Counter[str]()
    for round_ in range(MAX_ATTEMPTS + 2):
        hidden: list[dict[str, Any]] = []
        for batch in range(100):
            messages = sqs.receive_message(
                QueueUrl=queue["queue_url"], MaxNumberOfMessages=10, VisibilityTimeout=600, AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                break
            weather(round_, batch)
            response = handler(sqs_event(messages, queue["queue_arn"]), None)
            failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
            hidden += [m for m in messages if m["MessageId"] in failed]
            failures.update(body_key(m["Body"]) for m in messages if m["MessageId"] in failed)
            done = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages)
                if m["MessageId"] not in failed
            ]
            if done:
                sqs.delete_message_batch(QueueUrl=queue["queue_url"], Entries=done)
        if batch == 0 and not hidden:
            return failures
        for m in hidden:
            sqs.change_message_visibility(
                QueueUrl=queue["queue_url"], ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
    raise AssertionError("the queue never emptied")


def redrive(clients: dict[str, Any], queue: dict[str, str]) -> list[str]:
    """The DLQ's messages moved back to the source queue, as SQS's redrive does; their keys."""
    sqs, keys = clients["sqs"], []
    while messages := sqs.receive_message(QueueUrl=queue["dlq_url"], MaxNumberOfMessages=10).get("Messages", []):
        for m in messages:
            sqs.send_message(QueueUrl=queue["queue_url"], MessageBody=m["Body"])
            sqs.delete_message(QueueUrl=queue["dlq_url"], ReceiptHandle=m["ReceiptHandle"])
            keys.append(body_key(m["Body"]))
    return keys


def test_s3_outage_during_an_sqs_backlog(
    classifier_handler: Any,
    pipeline_env: dict[str, Any],
    flaky_s3: FlakyS3,  # noqa: F811
) -> None:
    clients, scans = pipeline_env, corpus()
    good, poison = [s for s in scans if not s.poison], [s for s in scans if s.poison]
    queue = make_bucket(clients)
    bucket = queue["bucket"]
    # Poison right after the first two batches, so that it meets the outage at every attempt.
    upload(clients, bucket, (*good[:20], *poison, *good[20:]))

    def outage(round_: int, batch: int) -> None:
        """S3 fine for two batches, then down: SlowDown, then 500s and dropped connections,
        then only writes failing, and back in the middle of the last attempt."""
        if round_ == 0:
            flaky_s3.go_down("503") if batch >= 2 else flaky_s3.come_back()
        elif round_ == 1:
            flaky_s3.go_down(("drop", "500")[batch % 2])
        elif round_ == 2 and batch == 0:
            flaky_s3.go_down("503", writes_only=True)  # fetched and analysed, but nothing written
        elif round_ == 2 and batch == 1:
            flaky_s3.go_down("drop")
        else:
            flaky_s3.come_back()

    failures = deliver_in_rounds(classifier_handler, clients, queue, outage)
    flaky_s3.come_back()

    items = {item["key"]: item for item in status_items(clients, bucket)}
    assert sorted(items) == sorted(s.key for s in scans)  # one record each, even mid-outage
    dead = redrive(clients, queue)
    gave_up = {k for k, item in items.items() if item.get("retryable")}
    assert sorted(dead) == sorted(gave_up)  # in the DLQ exactly when its error record says so
    for key in gave_up:
        assert items[key]["outcome"] == "error" and failures[key] == MAX_ATTEMPTS
        assert items[key]["reason"].startswith(f"gave up after {MAX_ATTEMPTS} attempts: S3 ")
    recovered = {k for k, item in items.items() if item["outcome"] == "result" and failures[k]}
    first_time = {k for k, item in items.items() if item["outcome"] == "result" and not failures[k]}
    assert gave_up and recovered and first_time, (len(gave_up), len(recovered), len(first_time))
    assert gave_up & {s.key for s in poison}  # poison whose quarantine S3 refused to the end
    answered = [s for s in scans if s.key in recovered | first_time]
    assert keys_under(clients, bucket, "results/") == result_files(answered, "results/")

    # S3 is back and the DLQ redriven: the rest settle, replacing their retryable errors.
    assert not deliver_in_rounds(classifier_handler, clients, queue, lambda round_, batch: None)
    items = {item["key"]: item for item in status_items(clients, bucket)}
    assert {k: (i["outcome"], i.get("retryable", False)) for k, i in items.items()} == {
        s.key: ("error" if s.poison else "result", False) for s in scans
    }
    assert keys_under(clients, bucket, "results/") == result_files(good, "results/")
    assert keys_under(clients, bucket, "quarantine/") == {f"quarantine/{s.key}" for s in poison}
    assert "Messages" not in clients["sqs"].receive_message(QueueUrl=queue["dlq_url"])
