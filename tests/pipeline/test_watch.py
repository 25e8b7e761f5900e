"""`medfn watch DIR`: the local embedded default, through the same worker as S3 uploads."""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from medfn.commands import watch as watch_command
from medfn.errors import StorageUnavailable
from medfn.pipeline.folder_storage import FolderStorage
from medfn.pipeline.folder_watch import FolderWatch
from medfn.pipeline.settings import PipelineSettings
from medfn.pipeline.sqlite_status import SqliteStatusTable
from medfn.pipeline.types import ObjectRef
from medfn.pipeline.worker import ScanWorker
from tests.conftest import REPO
from tests.pipeline.test_corpus import corpus, demographics


def drop(root: Path, key: str, data: bytes, age_s: float = 0.0) -> Path:
    """Write as a copy tool does (a hidden partial file, then a rename), optionally aged."""
    target = root / "incoming" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    partial.write_bytes(data)
    partial.replace(target)
    if age_s:
        then = time.time() - age_s
        os.utime(target, (then, then))
    return target


def run_watch(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    watch_command.add_arguments(parser)
    return watch_command.run(parser.parse_args(list(argv)))


def test_backlog_in_one_command(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)
    scans = corpus()
    for scan in scans:
        drop(tmp_path, scan.key, scan.data)
    functions = str(REPO / "functions")
    assert run_watch(str(tmp_path), "--once", "--function", "scan_classifier", "--functions", functions, "-v") == 0
    out, err = capsys.readouterr()
    poison = {s.key for s in scans if s.poison}
    assert json.loads(out.splitlines()[-1]) == {
        "results": len(scans) - len(poison),
        "errors": len(poison),
        "duplicates": 0,
        "ignored": 0,
        "retrying": 0,
    }
    assert f"{len(scans)}/{len(scans)}" in err  # the progress bar's last state

    results = {p.relative_to(tmp_path / "results").as_posix() for p in (tmp_path / "results").rglob("*.json")}
    assert results == {f"{s.key}.json" for s in scans if not s.poison}
    quarantined = {
        p.relative_to(tmp_path / "quarantine").as_posix() for p in (tmp_path / "quarantine").rglob("*") if p.is_file()
    }
    assert quarantined == poison | {f"{k}.reason.json" for k in poison}
    incoming = {
        p.relative_to(tmp_path / "incoming").as_posix() for p in (tmp_path / "incoming").rglob("*") if p.is_file()
    }
    assert incoming == {s.key for s in scans if not s.poison}
    reason = json.loads((tmp_path / "quarantine" / "poison/truncated.png.reason.json").read_text())
    assert reason["code"] == "unprocessable-input" and "truncated" in reason["reason"]

    table = SqliteStatusTable(tmp_path / "status.sqlite3")
    records = table.records()
    table.close()
    assert sorted(r["key"] for r in records) == sorted(s.key for s in scans)
    written = caplog.text + json.dumps(records) + "".join(p.read_text() for p in (tmp_path / "results").rglob("*.json"))
    assert not sorted(v for v in demographics() if v in written)

    # A restart finds everything recorded: nothing is processed or written twice.
    assert run_watch(str(tmp_path), "--once", "--function", "scan_classifier", "--functions", functions, "--fhir") == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["duplicates"] == len(scans) - len(poison)
    assert not list((tmp_path / "results").rglob("*.fhir.json"))


@pytest.fixture
def folder(tmp_path: Path, classifier_handler: Any) -> tuple[FolderWatch, SqliteStatusTable]:
    settings = PipelineSettings(formats=("json", "fhir"))
    storage = FolderStorage(tmp_path, settings)
    status = SqliteStatusTable(tmp_path / "status.sqlite3")
    worker = ScanWorker(classifier_handler.function.plane, "scan_classifier", storage, status, settings)
    yield FolderWatch(storage=storage, worker=worker, settle_s=0.3, progress=False), status
    status.close()


def test_arrivals_are_processed_once_they_settle(folder: tuple[FolderWatch, SqliteStatusTable], tmp_path: Path) -> None:
    watch, status = folder
    png = next(s for s in corpus() if s.kind == "png")
    drop(tmp_path, "early.png", png.data, age_s=10)
    stop = threading.Event()
    thread = threading.Thread(target=watch.run, kwargs={"poll_s": 0.05, "stop": stop.is_set})
    thread.start()
    try:
        drop(tmp_path, "later/arrival.png", png.data)
        assert watch.pending(settle_s=60) == []  # a fresh file waits until it has settled
        deadline = time.monotonic() + 15
        while len(status.records()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert sorted(r["key"] for r in status.records()) == ["early.png", "later/arrival.png"]
    assert (tmp_path / "results" / "later" / "arrival.png.fhir.json").is_file()
    assert watch.total.results == 2


@dataclass
class FailingReads:
    """The folder backend whose reads fail `failures` times: a disk that is briefly unavailable."""

    inner: FolderStorage
    failures: int

    def fetch(self, ref: ObjectRef) -> bytes:
        if self.failures:
            self.failures -= 1
            raise StorageUnavailable("the file could not be read")
        return self.inner.fetch(ref)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize(("failures", "outcome"), [(2, "result"), (5, "error")])
def test_transient_failures_are_retried_up_to_the_limit(
    folder: tuple[FolderWatch, SqliteStatusTable], tmp_path: Path, failures: int, outcome: str
) -> None:
    watch, status = folder
    watch.worker.storage = FailingReads(watch.storage, failures)  # type: ignore[assignment]
    drop(tmp_path, "flaky.png", next(s for s in corpus() if s.kind == "png").data, age_s=10)
    for _ in range(4):  # polls
        watch.process(watch.pending())
    (record,) = status.records()
    assert record["outcome"] == outcome and record["attempts"] == (1 if outcome == "result" else 3)
    assert record.get("retryable", False) == (outcome == "error")


def test_release_removes_the_file_seen_and_never_its_replacement(tmp_path: Path) -> None:
    from medfn.errors import ObjectMissing

    storage = FolderStorage(tmp_path)
    path = drop(tmp_path, "notes.txt", b"first upload", age_s=10)
    seen = storage.ref_for(path)
    drop(tmp_path, "notes.txt", b"a newer upload under the same name")
    with pytest.raises(ObjectMissing):
        storage.release(seen)
    assert path.read_bytes() == b"a newer upload under the same name"
    storage.release(storage.ref_for(path))
    assert not path.exists()
    with pytest.raises(ObjectMissing):  # twice: gone already, which the worker takes as done
        storage.release(seen)
