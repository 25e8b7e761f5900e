"""Where an instance received by STOW-RS or C-STORE goes: the upload storage the pipeline watches.

    FolderSink(dir)          dir/incoming/<study>/<series>/<sop>.dcm, for `medfn watch dir`
    S3Sink(bucket, prefix)   s3://bucket/<prefix><study>/<series>/<sop>.dcm, whose event reaches
                             the function (prefix: the function's own, "<function>/")

Names come from the instance's UIDs, which medfn.studies.headers has checked to be digits and
dots, so no name can climb out of its folder. The same instance sent again lands under the same
name: the series table counts a SOP Instance UID once, however often it arrives.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from medfn.errors import StorageUnavailable

if TYPE_CHECKING:
    from medfn.studies.headers import InstanceHeader

log = logging.getLogger(__name__)


class InstanceSink(Protocol):
    def put(self, header: InstanceHeader, data: bytes) -> str:
        """Store one instance whole (or not at all); where it went, for the log. Raises
        StorageUnavailable when the storage does not take it."""
        ...


def instance_name(header: InstanceHeader) -> str:
    return f"{header.study_instance_uid}/{header.series_instance_uid}/{header.sop_instance_uid}.dcm"


class FolderSink:
    """Written under a hidden `.part` name, then renamed into place: `medfn watch` never takes a
    name starting with "." or ending in ".part", so it never reads half an instance."""

    def __init__(self, directory: Path | str) -> None:
        self.incoming = Path(directory) / "incoming"

    def put(self, header: InstanceHeader, data: bytes) -> str:
        path = self.incoming / instance_name(header)
        try:
            if _same_file(path, data):  # a re-send: leave it be, so the watcher sees no change
                return str(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
            try:
                with open(partial, "xb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable("the incoming folder could not be written") from exc
        return str(path)


def _same_file(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except FileNotFoundError:
        return False


class S3Sink:
    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        if not bucket:
            raise ValueError("S3Sink needs a bucket (MEDFN_UPLOAD_BUCKET)")
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # only where instances arrive

            self._client = boto3.client("s3")
        return self._client

    def put(self, header: InstanceHeader, data: bytes) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.prefix + instance_name(header)
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/dicom")
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable("S3 put_object of a received instance failed") from exc
        return f"s3://{self.bucket}/{key}"
