"""Scans in a folder, for `medfn watch DIR`: DIR/incoming in, DIR/results and DIR/quarantine out.

The folder plays the bucket: an ObjectRef's key is the path under DIR/incoming, and its ETag
is the file's size and modification time (as web servers make one), so a file replaced by a
new one is a new upload while the same file seen twice is not.

Where the folder differs from S3, on purpose:

- a file gone from incoming/ before it was read is a transient failure, not a record: a file
  moved away and back is processed when it is back, and one that never comes back is not
  the folder's any more (`FolderWatch` stops retrying it);
- every file is written whole or not at all: into a hidden partial file next to where it
  goes, then renamed, so a rename never crosses file systems (results/ may be a link to
  another disk) and a failed write (a full disk) leaves nothing behind;
- one watcher per folder: `watch_lock` holds DIR/.medfn-watch.lock while `medfn watch` runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from medfn.errors import BadRequest, ObjectMissing, PayloadTooLarge, StorageUnavailable
from medfn.pipeline.settings import PipelineSettings
from medfn.pipeline.status import now_iso
from medfn.pipeline.storage import RESULT_MEDIA_TYPES
from medfn.pipeline.types import Fetched, ObjectRef

LOCK_NAME = ".medfn-watch.lock"
_PARTIAL_SUFFIX = ".part"


@contextmanager
def watch_lock(root: Path) -> Iterator[None]:
    """Hold DIR's watch lock, or raise BadRequest naming the process that holds it.

    flock(2): the kernel releases it when the process ends however it ends (SIGKILL too), so
    a stale lock file never blocks a restart. The file itself stays; removing it would let a
    third watcher lock a new file while the second still holds the old one.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise BadRequest(f"{root} cannot be watched: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise BadRequest(f"{root} is already watched by another medfn watch{by}: stop that one first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


class FolderStorage:
    def __init__(self, root: Path, settings: PipelineSettings | None = None) -> None:
        self.root = root.resolve()
        self.settings = settings or PipelineSettings()
        self.incoming = self.root / "incoming"
        self.results = self.root / "results"
        self.quarantined = self.root / "quarantine"
        self.partial = self.root / ".partial"  # where older versions wrote partial files
        for folder in (self.incoming, self.results, self.quarantined):
            folder.mkdir(parents=True, exist_ok=True)
        self._remove_abandoned()

    def _remove_abandoned(self) -> None:
        """A process killed between a write and its rename leaves the partial file behind, and
        nothing would rename it: its scan has no record yet, so it is written again anyway.
        (`medfn watch` holds the folder's lock before this runs: no other watcher is writing.)"""
        abandoned = [p for folder in (self.results, self.quarantined) for p in folder.rglob(f".*{_PARTIAL_SUFFIX}")]
        if self.partial.is_dir():
            abandoned += list(self.partial.iterdir())
        for path in abandoned:
            with suppress(OSError):
                path.unlink(missing_ok=True)

    def ref_for(self, path: Path, stat: os.stat_result | None = None) -> ObjectRef:
        stat = stat or path.stat()
        return ObjectRef(
            bucket=self.root.name,
            key=path.relative_to(self.incoming).as_posix(),
            etag=_etag(stat),
            size=stat.st_size,
            scheme="file",
        )

    def fetch(self, ref: ObjectRef) -> Fetched:
        try:
            path = self._as_seen(ref)
            if path.stat().st_size > self.settings.max_object_bytes:
                raise PayloadTooLarge(f"file is over the limit of {self.settings.max_object_bytes} bytes")
            return Fetched(path.read_bytes())  # a local file: no API key asked for it
        except FileNotFoundError as exc:
            # Not poison: a file moved away and back is processed when it is back.
            raise StorageUnavailable("the file is no longer in incoming/") from exc
        except OSError as exc:
            raise StorageUnavailable("the file could not be read") from exc

    def present(self, ref: ObjectRef) -> bool:
        """Whether a file is still under `ref`'s name in incoming/ (this version or another)."""
        return os.path.lexists(self.incoming / ref.key)

    def write_result(self, ref: ObjectRef, suffix: str, document: bytes) -> str:
        target = self.results / f"{ref.key}{suffix}"
        self._write_atomically(target, document)
        return str(target)

    def quarantine(self, ref: ObjectRef, code: str, reason: str) -> str:
        """Copy the file as it was read, then its reason; "" when that version is gone already.

        Gone or changed since it was read (a writer that paused longer than the settle time,
        then went on): nothing is copied, the caller records the error without a copy and
        leaves the file, whose new content is a new upload. A result of an earlier version of
        the file is removed: it no longer describes what is under that name.
        """
        target = self.quarantined / ref.key
        try:
            if not self._copy_atomically(self._as_seen(ref), target, ref):
                return ""
        except (FileNotFoundError, ObjectMissing):
            return ""
        except OSError as exc:
            raise StorageUnavailable("the file could not be copied to quarantine") from exc
        reason_doc = {"code": code, "reason": reason, "quarantined_at": now_iso()}
        self._write_atomically(
            target.with_name(target.name + ".reason.json"), json.dumps(reason_doc, indent=2).encode()
        )
        for suffix in (s for s in RESULT_MEDIA_TYPES if s.startswith(".")):  # a scan's, not a series'
            superseded = self.results / f"{ref.key}{suffix}"
            try:
                superseded.unlink(missing_ok=True)
            except OSError as exc:
                raise StorageUnavailable(f"the superseded {superseded.name} could not be removed") from exc
        return str(target)

    def release(self, ref: ObjectRef) -> None:
        """Take the quarantined original out of incoming/, only while it is the version read.

        Moved over its quarantine copy (the same bytes) rather than deleted where both folders
        share a file system: a writer still holding the file open, paused past the settle
        time, then writes into quarantine/ instead of into a deleted file. Elsewhere, deleted.
        """
        try:
            path = self._as_seen(ref)
            try:
                os.rename(path, self.quarantined / ref.key)
            except OSError:  # another file system, or the copy's folder gone: the copy is whole
                path.unlink()
        except FileNotFoundError as exc:
            raise ObjectMissing("the file no longer exists") from exc
        except OSError as exc:
            raise StorageUnavailable("the quarantined file could not be removed from incoming") from exc

    def outside(self, path: Path) -> bool:
        """A symbolic link, or a path through one: it may point anywhere on the machine."""
        return any(part.is_symlink() for part in (path, *path.parents) if part.is_relative_to(self.incoming))

    def _as_seen(self, ref: ObjectRef) -> Path:
        """The file `ref` names, while it is still the one seen (FileNotFoundError if gone)."""
        path = self.incoming / ref.key
        if self.outside(path):
            raise ObjectMissing("the file is a symbolic link: only files in the folder are read")
        if self.ref_for(path).etag != ref.etag:
            raise ObjectMissing("the file changed since it was seen: its new content is a new upload")
        return path

    def _write_atomically(self, target: Path, data: bytes) -> None:
        """Readers of DIR/results never see half a file: write a hidden partial file beside
        `target` (same folder, so same file system), then rename it; on failure, remove it."""
        partial = _partial_for(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "xb") as out:
                out.write(data)
            os.replace(partial, target)
        except OSError as exc:
            _discard(partial)
            raise StorageUnavailable(f"{target.name} could not be written") from exc

    def _copy_atomically(self, source: Path, target: Path, ref: ObjectRef) -> bool:
        """Copy `source` to `target` whole, and only while it is the version `ref` names:
        its size and modification time checked on the open file before and after the copy
        (a file renamed over it meanwhile leaves the open one intact). False if it is not."""
        try:
            src = open(source, "rb")
        except FileNotFoundError:
            return False
        partial = _partial_for(target)
        try:
            with src:
                seen = os.fstat(src.fileno())
                if _etag(seen) != ref.etag:
                    return False
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(partial, "xb") as out:
                    shutil.copyfileobj(src, out, 1024 * 1024)
                if _etag(os.fstat(src.fileno())) != ref.etag:
                    _discard(partial)
                    return False
            os.utime(partial, ns=(seen.st_atime_ns, seen.st_mtime_ns))
            os.replace(partial, target)
        except OSError as exc:
            _discard(partial)
            raise StorageUnavailable("the file could not be copied to quarantine") from exc
        return True


def _etag(stat: os.stat_result) -> str:
    return f"{stat.st_size:x}-{stat.st_mtime_ns:x}"


def _partial_for(target: Path) -> Path:
    """Hidden, unique, and in `target`'s folder: `.name.<random>.part`."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}{_PARTIAL_SUFFIX}")


def _discard(partial: Path) -> None:
    with suppress(OSError):
        partial.unlink(missing_ok=True)
