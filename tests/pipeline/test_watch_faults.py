"""`medfn watch` when the writer, the disk or a second watcher misbehaves: nothing is lost.

Faults are real file-system behaviour where the kernel gives one to root (the tests run as
root in CI, where chmod does not keep anyone out): results/ replaced by a plain file, a
directory where a result should go, a second real watcher process holding the folder, a
results/ on another mount (/dev/shm, where it is one), a writer that goes on after a pause,
RLIMIT_FSIZE cutting a copy off mid-write (EFBIG). A full disk is injected in-process
instead (`DiskFull`: Python's `open`, for files written under the folder outside incoming/,
writes half, then fails with ENOSPC), because no disk can be filled to order here without
mount rights, and so is a cross-device rename where no second mount exists (`os.replace`
raising EXDEV, as the kernel does across mounts).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import io
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from medfn import cli
from medfn.errors import BadRequest, StorageUnavailable
from medfn.pipeline.folder_storage import LOCK_NAME, FolderStorage, watch_lock
from medfn.pipeline.folder_watch import FolderWatch
from medfn.pipeline.settings import PipelineSettings
from medfn.pipeline.sqlite_status import SqliteStatusTable
from medfn.pipeline.types import ObjectRef
from medfn.pipeline.worker import ScanWorker
from tests.conftest import REPO
from tests.pipeline.test_corpus import Scan, corpus
from tests.pipeline.test_crash import recorded, start_watch
from tests.pipeline.test_watch import drop, run_watch

FUNCTIONS = str(REPO / "functions")
WAIT_S = 30  # the bound of every wait below: reached only when something is broken

MakeWatch = Callable[..., tuple[FolderWatch, SqliteStatusTable]]


def pngs(n: int) -> list[Scan]:
    return [s for s in corpus() if s.kind == "png"][:n]


def poison(n: int) -> list[Scan]:
    return [s for s in corpus() if s.poison and s.data][:n]


@pytest.fixture
def make_watch(tmp_path: Path, classifier_handler: Any) -> Iterator[MakeWatch]:
    """A FolderWatch on a folder (tmp_path unless named), retrying after 10 ms instead of 500."""
    tables: list[SqliteStatusTable] = []

    def make(
        root: Path = tmp_path, max_attempts: int = 3, formats: tuple[str, ...] = ("json",)
    ) -> tuple[FolderWatch, SqliteStatusTable]:
        settings = PipelineSettings(max_attempts=max_attempts, formats=formats)
        storage = FolderStorage(root, settings)
        status = SqliteStatusTable(storage.root / "status.sqlite3")
        tables.append(status)
        worker = ScanWorker(classifier_handler.function.plane, "scan_classifier", storage, status, settings)
        return FolderWatch(storage=storage, worker=worker, settle_s=0.0, progress=False, retry_s=0.01), status

    yield make
    for table in tables:
        table.close()


@dataclass
class Hooked:
    """The folder backend with a hook before each call of one kind: where a fault is injected."""

    inner: FolderStorage
    before: dict[str, Callable[[ObjectRef], None]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def _hook(self, name: str, ref: ObjectRef) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in self.before:
            self.before[name](ref)

    def fetch(self, ref: ObjectRef) -> bytes:
        self._hook("fetch", ref)
        return self.inner.fetch(ref)

    def write_result(self, ref: ObjectRef, suffix: str, document: bytes) -> str:
        self._hook("write_result", ref)
        return self.inner.write_result(ref, suffix, document)

    def quarantine(self, ref: ObjectRef, code: str, reason: str) -> str:
        self._hook("quarantine", ref)
        return self.inner.quarantine(ref, code, reason)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def hook(watch: FolderWatch, **before: Callable[[ObjectRef], None]) -> Hooked:
    hooked = Hooked(watch.storage, dict(before))
    watch.worker.storage = hooked  # type: ignore[assignment]
    return hooked


def by_key(status: SqliteStatusTable) -> dict[str, dict[str, Any]]:
    """The records, one per key: a second one for a key fails here."""
    records = status.records()
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)), sorted(keys)
    return {r["key"]: r for r in records}


def partial_files(*folders: Path) -> list[str]:
    """Partial files of ours (hidden `.part`, or the old DIR/.partial/): none may outlive a write."""
    return sorted(
        str(p)
        for folder in folders
        for p in folder.rglob("*")
        if p.is_file() and "incoming" not in p.relative_to(folder).parts[:1] and p.name.endswith(".part")
    )


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"waited {WAIT_S} s for {what}"
        time.sleep(0.01)


@dataclass
class Watching:
    """FolderWatch.run(once=False) on a thread, stopped on leaving."""

    watch: FolderWatch
    stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Watching:
        self.thread = threading.Thread(target=self.watch.run, kwargs={"poll_s": 0.02, "stop": self.stop.is_set})
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=WAIT_S)
        assert not self.thread.is_alive()


# -- 1. a second watcher on the same folder ------------------------------------------------------


def lock_held(root: Path) -> bool:
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the lock this look took


def test_a_second_watcher_is_refused_until_the_first_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = start_watch(tmp_path, "--settle", "0", "--poll", "0.05")
    try:
        wait_for(lambda: (tmp_path / LOCK_NAME).exists() and lock_held(tmp_path), "the first watcher's lock")
        argv = ["watch", str(tmp_path), "--once", "--function", "scan_classifier", "--functions", FUNCTIONS]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "already watched" in err[0] and f"pid {first.pid}" in err[0], err
        assert first.poll() is None  # the first one goes on
        first.send_signal(signal.SIGKILL)  # no chance to clean up: the kernel drops the lock
        first.wait(timeout=WAIT_S)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    drop(tmp_path, "after.png", pngs(1)[0].data)
    assert run_watch(str(tmp_path), "--once", "--function", "scan_classifier", "--functions", FUNCTIONS) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["results"] == 1


def test_the_lock_is_per_folder_and_released_on_leaving(tmp_path: Path) -> None:
    with watch_lock(tmp_path / "a"):
        with pytest.raises(BadRequest, match="already watched"):
            with watch_lock(tmp_path / "a"):
                pass
        with watch_lock(tmp_path / "b"):
            pass
    with watch_lock(tmp_path / "a"):
        pass


# -- 2. --once with transient failures -------------------------------------------------------------


@pytest.mark.parametrize(("failures", "outcome"), [(2, "result"), (5, "error")])
def test_once_retries_within_the_run_until_each_file_has_its_record(
    make_watch: MakeWatch, tmp_path: Path, failures: int, outcome: str
) -> None:
    watch, status = make_watch()
    flaky, steady = pngs(2)
    drop(tmp_path, "flaky.png", flaky.data)
    drop(tmp_path, "steady.png", steady.data)
    left = {"n": failures}

    def unreadable(ref: ObjectRef) -> None:
        if ref.key == "flaky.png" and left["n"]:
            left["n"] -= 1
            raise StorageUnavailable("the file could not be read")

    hooked = hook(watch, fetch=unreadable)
    summary = watch.run(once=True).as_dict()
    records = by_key(status)
    assert sorted(records) == ["flaky.png", "steady.png"]
    assert records["flaky.png"]["outcome"] == outcome
    assert records["flaky.png"].get("retryable", False) == (outcome == "error")
    assert hooked.calls["fetch"] == 1 + min(failures + 1, 3)  # steady once; flaky up to max_attempts
    assert summary == {
        "results": 2 if outcome == "result" else 1,
        "errors": 0 if outcome == "result" else 1,
        "duplicates": 0,
        "ignored": 0,
        "retrying": 0,
    }


def test_once_through_the_command_ends_with_the_retryable_error_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fetch = FolderStorage.fetch

    def never_readable(self: FolderStorage, ref: ObjectRef) -> bytes:
        if ref.key == "flaky.png":
            raise StorageUnavailable("the file could not be read")
        return real_fetch(self, ref)

    monkeypatch.setattr(FolderStorage, "fetch", never_readable)
    monkeypatch.setenv("MEDFN_MAX_ATTEMPTS", "2")  # one backoff (0.5 s) instead of two
    flaky, steady = pngs(2)
    drop(tmp_path, "flaky.png", flaky.data)
    drop(tmp_path, "steady.png", steady.data)
    assert run_watch(str(tmp_path), "--once", "--function", "scan_classifier", "--functions", FUNCTIONS) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {
        "results": 1,
        "errors": 1,
        "duplicates": 0,
        "ignored": 0,
        "retrying": 0,
    }
    status = SqliteStatusTable(tmp_path / "status.sqlite3")
    records = by_key(status)
    status.close()
    assert records["flaky.png"]["reason"] == "gave up after 2 attempts: the file could not be read"
    assert records["flaky.png"]["retryable"] and records["steady.png"]["outcome"] == "result"
    assert (tmp_path / "incoming" / "flaky.png").exists()  # left for a later run to try again


# -- 3. results/ unwritable for a while -------------------------------------------------------------


def results_made_a_file(root: Path) -> Callable[[], None]:
    """results/ replaced by a plain file: as root, the one sure way to make a folder unwritable.
    Returns what puts the folder back."""
    away = root / "results.away"
    (root / "results").rename(away)
    (root / "results").write_bytes(b"not a folder")

    def put_back() -> None:
        (root / "results").unlink()
        away.rename(root / "results")

    return put_back


def test_results_unwritable_for_a_while_are_retried_in_the_same_run(make_watch: MakeWatch, tmp_path: Path) -> None:
    watch, status = make_watch()
    for i, scan in enumerate(pngs(3)):
        drop(tmp_path, f"scan-{i}.png", scan.data)
    put_back = results_made_a_file(tmp_path)

    def outage(ref: ObjectRef) -> None:
        if hooked.calls["write_result"] == 5:  # four writes refused: each scan's first, one second
            put_back()

    hooked = hook(watch, write_result=outage)
    summary = watch.run(once=True).as_dict()
    assert {k: r["outcome"] for k, r in by_key(status).items()} == {f"scan-{i}.png": "result" for i in range(3)}
    assert summary == {"results": 3, "errors": 0, "duplicates": 0, "ignored": 0, "retrying": 0}
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [f"scan-{i}.png.json" for i in range(3)]
    assert partial_files(tmp_path) == []


def test_retrying_counts_scans_not_attempts(make_watch: MakeWatch, tmp_path: Path) -> None:
    watch, status = make_watch(max_attempts=100)  # the outage outlasts many attempts, none the last
    for i, scan in enumerate(pngs(3)):
        drop(tmp_path, f"scan-{i}.png", scan.data)
    put_back = results_made_a_file(tmp_path)
    with Watching(watch):
        wait_for(lambda: len(watch._failures) == 3 and min(watch._failures.values()) >= 3, "three failed attempts each")
    assert watch.total.as_dict() == {"results": 0, "errors": 0, "duplicates": 0, "ignored": 0, "retrying": 3}
    put_back()
    with Watching(watch):
        wait_for(lambda: len(status.records()) == 3, "the results once the folder is back")
    assert watch.total.as_dict() == {"results": 3, "errors": 0, "duplicates": 0, "ignored": 0, "retrying": 0}
    assert partial_files(tmp_path) == []


def test_a_write_that_fails_after_its_partial_file_leaves_none(make_watch: MakeWatch, tmp_path: Path) -> None:
    """The partial file is written, then the rename fails: a folder where the result goes."""
    watch, status = make_watch()
    drop(tmp_path, "scan.png", pngs(1)[0].data)
    (tmp_path / "results" / "scan.png.json" / "in the way").mkdir(parents=True)

    def rename_fails_twice(ref: ObjectRef) -> None:
        if hooked.calls["write_result"] == 3:
            shutil.rmtree(tmp_path / "results" / "scan.png.json")

    hooked = hook(watch, write_result=rename_fails_twice)
    summary = watch.run(once=True).as_dict()
    assert partial_files(tmp_path) == []
    assert summary["results"] == 1
    assert by_key(status)["scan.png"]["outcome"] == "result"
    assert json.loads((tmp_path / "results" / "scan.png.json").read_bytes())["source"]["key"] == "scan.png"


def test_partial_files_a_killed_watcher_left_beside_results_go_at_the_next_start(tmp_path: Path) -> None:
    left = [tmp_path / "results" / "ward 7" / ".a.png.json.0123456789ab.part", tmp_path / "quarantine" / ".b.part"]
    for path in left:
        path.parent.mkdir(parents=True)
        path.write_bytes(b'{"half": ')
    (tmp_path / "results" / "ward 7" / "a.png.json").write_bytes(b"{}")  # a whole result stays
    FolderStorage(tmp_path)
    assert partial_files(tmp_path) == []
    assert (tmp_path / "results" / "ward 7" / "a.png.json").exists()


# -- 4. results/ on another file system ----------------------------------------------------------


@pytest.fixture(params=["another mount", "EXDEV emulated"])
def elsewhere(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on another file system: /dev/shm where it is one, else os.replace refusing
    any rename into or out of the folder, as the kernel does across mounts."""
    if request.param == "another mount":
        shm = Path("/dev/shm")
        if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev or not os.access(shm, os.W_OK):
            pytest.skip("no writable /dev/shm on another file system here")
        folder = Path(tempfile.mkdtemp(dir=shm, prefix="medfn-results-"))
        yield folder
        shutil.rmtree(folder, ignore_errors=True)
        return
    folder = (tmp_path / "other-disk").resolve()
    folder.mkdir()
    real_replace = os.replace

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        sides = {Path(os.path.realpath(os.path.dirname(p))).is_relative_to(folder) for p in (src, dst)}
        if len(sides) == 2:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    yield folder


def test_results_on_another_file_system(make_watch: MakeWatch, tmp_path: Path, elsewhere: Path) -> None:
    root = tmp_path / "scans"
    root.mkdir()
    (root / "results").symlink_to(elsewhere, target_is_directory=True)
    good, bad = pngs(2), poison(1)
    for scan in (*good, *bad):
        drop(root, scan.key, scan.data)
    watch, status = make_watch(root)
    summary = watch.run(once=True).as_dict()
    assert (summary["results"], summary["errors"], summary["retrying"]) == (2, 1, 0)
    records = by_key(status)
    assert {k: (r["outcome"], r.get("retryable", False)) for k, r in records.items()} == {
        **{s.key: ("result", False) for s in good},
        **{s.key: ("error", False) for s in bad},
    }
    for scan in good:
        assert json.loads((elsewhere / f"{scan.key}.json").read_bytes())["source"]["key"] == scan.key
    assert partial_files(root, elsewhere) == []


# -- 5. Ctrl-C in the middle of a backlog --------------------------------------------------------


def test_ctrl_c_mid_backlog_prints_what_was_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT sent to this very process during the fifth scan, as a terminal's Ctrl-C is."""
    for i, scan in enumerate(pngs(10)):
        drop(tmp_path, f"scan-{i:02d}.png", scan.data, age_s=100 - i)
    real_process = ScanWorker.process
    calls = {"n": 0}

    def process(self: ScanWorker, ref: ObjectRef, attempt: int | None = None) -> Any:
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return real_process(self, ref, attempt)

    monkeypatch.setattr(ScanWorker, "process", process)
    handler = signal.getsignal(signal.SIGINT)
    assert run_watch(str(tmp_path), "--once", "--function", "scan_classifier", "--functions", FUNCTIONS) == 0
    assert signal.getsignal(signal.SIGINT) is handler  # put back
    out, err = capsys.readouterr()
    assert "stopping after the scan in hand" in err
    summary = json.loads(out.splitlines()[-1])
    status = SqliteStatusTable(tmp_path / "status.sqlite3")
    records = by_key(status)
    status.close()
    assert summary == {"results": 5, "errors": 0, "duplicates": 0, "ignored": 0, "retrying": 0}
    assert sorted(records) == [f"scan-{i:02d}.png" for i in range(5)]
    monkeypatch.undo()
    assert run_watch(str(tmp_path), "--once", "--function", "scan_classifier", "--functions", FUNCTIONS) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["results"] == 5  # the rest, once each


def test_ctrl_c_to_a_real_watcher(tmp_path: Path) -> None:
    scans = [Scan(f"copy{n}/{s.key}", s.data, s.kind) for n in range(3) for s in corpus()]
    for scan in scans:
        drop(tmp_path, scan.key, scan.data)
    database = tmp_path / "status.sqlite3"
    watcher = start_watch(tmp_path, "--once")
    try:
        wait_for(lambda: recorded(database) >= 10 or watcher.poll() is not None, "ten records")
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=WAIT_S)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, err[-2000:]
    summary = json.loads(out.splitlines()[-1])
    assert summary["results"] + summary["errors"] == recorded(database) >= 10
    assert summary["retrying"] == 0


# -- 6. a file moved away and back unchanged -------------------------------------------------------


def test_a_file_moved_away_before_it_was_read_is_processed_when_back(make_watch: MakeWatch, tmp_path: Path) -> None:
    watch, status = make_watch()
    path = drop(tmp_path, "wandering.png", pngs(1)[0].data, age_s=10)
    seen = watch.storage.ref_for(path)
    away = tmp_path / "away.png"

    def moved_away(ref: ObjectRef) -> None:
        if hooked.calls["fetch"] == 1:
            os.rename(path, away)  # between the listing and the read

    hooked = hook(watch, fetch=moved_away)
    first = watch.run(once=True).as_dict()
    assert status.records() == []  # nothing recorded for a file that is not there
    assert (first["results"], first["errors"], first["ignored"], first["retrying"]) == (0, 0, 1, 0)
    os.rename(away, path)  # back, unchanged: same size, same modification time
    assert watch.storage.ref_for(path) == seen
    watch.run(once=True)
    assert by_key(status)["wandering.png"]["outcome"] == "result"
    assert watch.total.results == 1


def test_a_file_that_left_while_watched_is_not_forgotten_as_handled(make_watch: MakeWatch, tmp_path: Path) -> None:
    """Out of attempts (its record retryable), moved away and back: a watcher that saw it gone
    takes it again, instead of keeping it as handled until a restart."""
    watch, status = make_watch()
    path = drop(tmp_path, "wandering.png", pngs(1)[0].data, age_s=10)
    away = tmp_path / "away.png"
    unreadable = threading.Event()
    unreadable.set()

    def fails(ref: ObjectRef) -> None:
        if unreadable.is_set():
            raise StorageUnavailable("the file could not be read")

    hook(watch, fetch=fails)
    listings = {"n": 0}
    real_pending = watch.pending

    def counted(settle_s: float | None = None) -> list[ObjectRef]:
        listings["n"] += 1
        return real_pending(settle_s)

    watch.pending = counted  # type: ignore[method-assign]
    with Watching(watch):
        wait_for(lambda: bool(status.records()), "the retryable error record")
        assert by_key(status)["wandering.png"]["retryable"]
        unreadable.clear()
        os.rename(path, away)
        seen_gone = listings["n"] + 2
        wait_for(lambda: listings["n"] >= seen_gone, "a listing without the file")
        os.rename(away, path)
        wait_for(lambda: by_key(status)["wandering.png"]["outcome"] == "result", "its result once back")


# -- 7. a writer that pauses longer than the settle time -----------------------------------------------


def test_senders_partial_files_and_folders_are_never_taken(make_watch: MakeWatch, tmp_path: Path) -> None:
    watch, _ = make_watch()
    data = pngs(1)[0].data
    incoming = tmp_path / "incoming"
    (incoming / ".uploading").mkdir(parents=True)
    for name in (".scan.png.part", "scan.png.part", "scan.png.tmp", ".uploading/scan.png"):
        (incoming / name).write_bytes(data)
    assert watch.pending() == []
    os.rename(incoming / ".uploading" / "scan.png", incoming / "scan.png")
    assert [ref.key for ref in watch.pending()] == ["scan.png"]


@pytest.mark.parametrize("how", ["appends", "renames a whole file over it"])
def test_a_file_changed_after_it_was_read_is_never_quarantined_nor_removed(
    make_watch: MakeWatch, tmp_path: Path, how: str
) -> None:
    """The writer wrote half, paused past the settle time, then went on: the half was read,
    found truncated, and while the watcher quarantines it the rest arrives."""
    watch, status = make_watch()
    whole = pngs(1)[0].data
    path = drop(tmp_path, "slow.png", whole[: len(whole) // 2], age_s=10)

    def writer_goes_on(ref: ObjectRef) -> None:
        if how == "appends":
            with open(path, "ab") as out:
                out.write(whole[len(whole) // 2 :])
        else:
            drop(tmp_path, "slow.png", whole)

    hook(watch, quarantine=writer_goes_on)
    assert watch.run(once=True).errors == 1
    (record,) = status.records()
    assert (record["outcome"], record.get("location", "")) == ("error", "")  # the half: no copy kept
    assert path.read_bytes() == whole  # the writer's file stays, whole
    assert not (tmp_path / "quarantine" / "slow.png").exists()
    assert partial_files(tmp_path) == []
    hook(watch)
    assert watch.run(once=True).results == 1  # the whole file is a new upload
    assert sorted(r["outcome"] for r in status.records()) == ["error", "result"]


def test_a_writer_that_goes_on_after_the_release_loses_nothing(make_watch: MakeWatch, tmp_path: Path) -> None:
    """The worst case of a sender writing in place: paused so long that the half it wrote was
    read, quarantined and released before it goes on, through the handle it still holds."""
    watch, status = make_watch()
    whole = pngs(1)[0].data
    path = drop(tmp_path, "slow.png", whole[: len(whole) // 2], age_s=10)
    with open(path, "ab") as sender:
        assert watch.run(once=True).errors == 1  # the half: truncated
        assert not path.exists()
        sender.write(whole[len(whole) // 2 :])
    assert (tmp_path / "quarantine" / "slow.png").read_bytes() == whole  # not written into a deleted file
    (record,) = status.records()
    assert record["location"] == str(tmp_path / "quarantine" / "slow.png")


# -- 8. the disk full while writing ----------------------------------------------------------------


@dataclass
class DiskFull:
    """Python's `open` (builtins and io, which pathlib calls) for files under `root` outside
    incoming/: while `full`, a file opened for writing takes half of what is written to it,
    then fails with ENOSPC, as a disk filling up mid-write does. SQLite writes in C: untouched."""

    root: Path
    full: bool = True
    refused: int = 0

    def open(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = _real_open(file, mode, *args, **kwargs)
        if not set(mode) & set("wxa+") or not isinstance(file, (str, os.PathLike)):
            return handle
        path = Path(os.path.abspath(file))
        if not path.is_relative_to(self.root) or path.is_relative_to(self.root / "incoming"):
            return handle
        return _FillingUp(handle, self)


_real_open = builtins.open


@dataclass
class _FillingUp:
    handle: Any
    disk: DiskFull

    def write(self, data: bytes) -> int:
        if not self.disk.full:
            return int(self.handle.write(data))
        self.handle.write(bytes(data[: len(data) // 2]))
        self.handle.flush()
        self.disk.refused += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self) -> _FillingUp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


@pytest.fixture
def disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DiskFull:
    disk = DiskFull(tmp_path.resolve())
    monkeypatch.setattr(builtins, "open", disk.open)
    monkeypatch.setattr(io, "open", disk.open)
    return disk


def quarantine_is_whole_or_absent(root: Path, originals: dict[str, bytes]) -> None:
    for path in (root / "quarantine").rglob("*"):
        key = path.relative_to(root / "quarantine").as_posix()
        if path.is_file() and not key.endswith(".reason.json"):
            assert path.read_bytes() == originals[key], key
    assert partial_files(root) == []


def test_disk_full_for_a_run_then_space_again(
    make_watch: MakeWatch, tmp_path: Path, disk_full: DiskFull, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    scans = (*pngs(3), *poison(2))
    for scan in scans:
        drop(tmp_path, scan.key, scan.data)
    originals = {s.key: s.data for s in scans}
    watch, status = make_watch()
    summary = watch.run(once=True).as_dict()
    assert disk_full.refused > 0
    records = by_key(status)
    assert sorted(records) == sorted(originals)  # one record each, though nothing could be written
    for record in records.values():
        assert (record["outcome"], record["retryable"], record["attempts"]) == ("error", True, 3)
        assert record["reason"].startswith("gave up after 3 attempts: ")
    assert (summary["errors"], summary["retrying"]) == (len(scans), 0)
    quarantine_is_whole_or_absent(tmp_path, originals)
    assert {p.relative_to(tmp_path / "incoming").as_posix() for p in (tmp_path / "incoming").rglob("*.*")} == set(
        originals
    )  # nothing released without its copy

    disk_full.full = False  # space again; the next run settles the rest
    again, status = make_watch()
    summary = again.run(once=True).as_dict()
    assert (summary["results"], summary["errors"], summary["retrying"]) == (3, 2, 0)
    records = by_key(status)
    assert {k: (r["outcome"], r.get("retryable", False)) for k, r in records.items()} == {
        s.key: ("error" if s.poison else "result", False) for s in scans
    }
    quarantine_is_whole_or_absent(tmp_path, originals)
    for scan in poison(2):
        assert (tmp_path / "quarantine" / scan.key).read_bytes() == scan.data
        assert not (tmp_path / "incoming" / scan.key).exists()
    assert "dead-letter" not in caplog.text and "queue" not in caplog.text


@dataclass
class FullTable:
    """The status table on the same full disk: reads work, writes fail."""

    inner: SqliteStatusTable
    disk: DiskFull

    def record(self, record: Any) -> bool:
        if self.disk.full:
            raise StorageUnavailable("the local status table could not be written")
        return self.inner.record(record)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_disk_full_with_the_status_table_says_what_happens_locally(
    make_watch: MakeWatch, tmp_path: Path, disk_full: DiskFull, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    scans = (*pngs(2), *poison(1))
    for scan in scans:
        drop(tmp_path, scan.key, scan.data)
    watch, status = make_watch()
    watch.worker.status = FullTable(status, disk_full)  # type: ignore[assignment]
    summary = watch.run(once=True).as_dict()
    assert status.records() == []
    assert summary == {"results": 0, "errors": 0, "duplicates": 0, "ignored": 0, "retrying": 3}  # scans
    assert "dead-letter" not in caplog.text and "queue" not in caplog.text
    for scan in scans:
        assert f"no record for {scan.key} after 3 attempts: it stays in incoming/ for the next run" in caplog.text
        assert (tmp_path / "incoming" / scan.key).read_bytes() == scan.data
    quarantine_is_whole_or_absent(tmp_path, {s.key: s.data for s in scans})

    disk_full.full = False
    again, status = make_watch()
    assert again.run(once=True).as_dict()["retrying"] == 0
    assert len(by_key(status)) == len(scans)


def test_a_copy_cut_off_by_the_kernel_is_never_left_half(make_watch: MakeWatch, tmp_path: Path) -> None:
    """RLIMIT_FSIZE: the kernel refuses a write past 1 MiB (EFBIG) as a full disk would, mid-copy."""
    big = Scan("poison/big.txt", b"not an image, " * (2 * 1024 * 1024 // 14), "text")
    drop(tmp_path, big.key, big.data)
    watch, status = make_watch()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, hard))
    try:
        summary = watch.run(once=True).as_dict()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    quarantine_is_whole_or_absent(tmp_path, {big.key: big.data})
    (record,) = status.records()
    assert record["retryable"] and "could not be copied to quarantine" in record["reason"]
    assert summary["errors"] == 1
    again, status = make_watch()
    assert again.run(once=True).errors == 1
    assert (tmp_path / "quarantine" / big.key).read_bytes() == big.data
    assert not (tmp_path / "incoming" / big.key).exists()


# -- 9. a processed file replaced with garbage ---------------------------------------------------------


def test_a_result_superseded_by_quarantined_garbage_is_removed(make_watch: MakeWatch, tmp_path: Path) -> None:
    watch, status = make_watch(formats=("json", "fhir"))
    first, second = pngs(2)
    drop(tmp_path, "scan.png", first.data, age_s=30)
    assert watch.run(once=True).results == 1
    results = [tmp_path / "results" / "scan.png.json", tmp_path / "results" / "scan.png.fhir.json"]
    assert all(p.exists() for p in results)

    drop(tmp_path, "scan.png", b"garbage, not a scan", age_s=20)  # replaced: another size and time
    assert watch.run(once=True).errors == 1
    assert not any(p.exists() for p in results)  # no result left that the file no longer has
    assert (tmp_path / "quarantine" / "scan.png").read_bytes() == b"garbage, not a scan"
    assert (tmp_path / "quarantine" / "scan.png.reason.json").exists()

    drop(tmp_path, "scan.png", second.data, age_s=10)  # and a good scan again
    assert watch.run(once=True).results == 2  # since the watch started
    newest = max(status.records(), key=lambda r: r["recorded_at"])
    assert newest["outcome"] == "result" and newest["location"] == str(results[0])
    assert json.loads(results[0].read_bytes())["source"]["etag"] == newest["etag"]  # the current one


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs: a real disk that fills. Mounting needs root (CAP_SYS_ADMIN), as CI has."""
    mountpoint = tmp_path / "scans" / "results"
    mountpoint.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mountpoint)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): {mounted.stderr.decode()[:120]}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_a_full_disk_for_a_while_delays_results_and_loses_none(small_tmpfs: Path) -> None:
    """results/ on a real tmpfs, full when the watcher starts and freed a second later: every scan
    ends with its result, one record each, and no partial file is left on the full disk."""
    root = small_tmpfs.parent
    filler = small_tmpfs / "filler"
    with contextlib.suppress(OSError):  # write until the tmpfs says it is full
        with filler.open("wb") as out:
            while True:
                out.write(b"\0" * 65536)
    scans = pngs(6)
    for scan in scans:
        drop(root, scan.key, scan.data)
    command = [sys.executable, "-m", "medfn.cli", "watch", str(root), "--once", "-v", "--no-progress"]
    command += ["--function", "scan_classifier", "--functions", str(REPO / "functions")]
    environment = {**os.environ, "MEDFN_MAX_ATTEMPTS": "6"}
    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    assert watcher.stderr is not None
    seen = []
    for line in watcher.stderr:  # the disk stays full until a write has failed on it
        seen.append(line)
        if "transient failure" in line:
            break
    assert any("transient failure" in line for line in seen), "".join(seen)[-2000:]
    filler.unlink()  # the disk has room again: the retries within the run now succeed
    out, err = watcher.communicate(timeout=120)
    assert watcher.returncode == 0, err[-2000:]
    records = by_key(SqliteStatusTable(root / "status.sqlite3"))
    assert {r["key"] for r in records.values()} == {s.key for s in scans}
    assert all(r["outcome"] == "result" for r in records.values()), records
    assert partial_files(root) == []
