"""Scans in a folder, for `medfn watch DIR`: DIR/incoming in, DIR/results and DIR/quarantine out.

The folder plays the bucket: an ObjectRef's key is the path under DIR/incoming, and its ETag
is the file's size and modification time (as web servers make one), so a file replaced by a
new one is a new upload while the same file seen twice is not.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from medfn.errors import ObjectMissing, PayloadTooLarge, StorageUnavailable
from medfn.pipeline.settings import PipelineSettings
from medfn.pipeline.status import now_iso
from medfn.pipeline.types import ObjectRef


class FolderStorage:
    def __init__(self, root: Path, settings: PipelineSettings | None = None) -> None:
        self.root = root.resolve()
        self.settings = settings or PipelineSettings()
        self.incoming = self.root / "incoming"
        self.results = self.root / "results"
        self.quarantined = self.root / "quarantine"
        self.partial = self.root / ".partial"  # files being written, renamed into place when whole
        for folder in (self.incoming, self.results, self.quarantined, self.partial):
            folder.mkdir(parents=True, exist_ok=True)
        # A process killed between a write and its rename leaves the partial file behind, and
        # nothing would rename it: its scan has no record yet, so it is written again anyway.
        # (A watcher running beside this one meanwhile sees one write fail, and retries it.)
        for abandoned in self.partial.iterdir():
            abandoned.unlink(missing_ok=True)

    def ref_for(self, path: Path) -> ObjectRef:
        stat = path.stat()
        return ObjectRef(
            bucket=self.root.name,
            key=path.relative_to(self.incoming).as_posix(),
            etag=f"{stat.st_size:x}-{stat.st_mtime_ns:x}",
            size=stat.st_size,
            scheme="file",
        )

    def fetch(self, ref: ObjectRef) -> bytes:
        try:
            path = self._as_seen(ref)
            if path.stat().st_size > self.settings.max_object_bytes:
                raise PayloadTooLarge(f"file is over the limit of {self.settings.max_object_bytes} bytes")
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ObjectMissing("the file no longer exists") from exc
        except OSError as exc:
            raise StorageUnavailable("the file could not be read") from exc

    def write_result(self, ref: ObjectRef, suffix: str, document: bytes) -> str:
        target = self.results / f"{ref.key}{suffix}"
        self._write_atomically(target, document)
        return str(target)

    def quarantine(self, ref: ObjectRef, code: str, reason: str) -> str:
        target = self.quarantined / ref.key
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.incoming / ref.key, target)
        except FileNotFoundError:
            pass  # moved already by an earlier attempt that did not get to record it
        except OSError as exc:
            raise StorageUnavailable("the file could not be copied to quarantine") from exc
        reason_doc = {"code": code, "reason": reason, "quarantined_at": now_iso()}
        self._write_atomically(
            target.with_name(target.name + ".reason.json"), json.dumps(reason_doc, indent=2).encode()
        )
        return str(target)

    def release(self, ref: ObjectRef) -> None:
        try:
            self._as_seen(ref).unlink()
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
        """Readers of DIR/results never see half a file: write in DIR/.partial, then rename."""
        partial = self.partial / f"{uuid.uuid4().hex}.part"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(data)
            partial.replace(target)
        except OSError as exc:
            raise StorageUnavailable(f"{target.name} could not be written") from exc
