"""Status records in SQLite: the local default (`medfn watch` keeps DIR/status.sqlite3)."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from medfn.errors import StorageUnavailable
from medfn.pipeline.types import ObjectRef, Settled, StatusRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    object_uri     TEXT NOT NULL,
    object_version TEXT NOT NULL,
    outcome        TEXT,                       -- NULL while only failures are counted
    retryable      INTEGER NOT NULL DEFAULT 0,
    failures       INTEGER NOT NULL DEFAULT 0,
    record         TEXT,                       -- StatusRecord.as_item() as JSON
    PRIMARY KEY (object_uri, object_version)
)
"""
_OPEN = "scans.outcome IS NULL OR scans.retryable = 1"  # rows a new record may still settle
# A series' record is replaced by one of a later generation (an instance arrived after it was answered)
_SUPERSEDED = f"{_OPEN} OR COALESCE(json_extract(scans.record, '$.generation'), 0) < ?"


class SqliteStatusTable:
    def __init__(self, path: Path) -> None:
        self.path = path
        # autocommit: every statement below is one atomic upsert, so no transaction is held open.
        # One connection shared by threads (a watcher may run in one), one statement at a time.
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")  # a second watcher may read while we write
        # No fsync per record (it cost ~5 ms a scan). A crash of the process loses nothing; a
        # power cut may lose the last records, and then the restart redoes those scans: their
        # files are still in incoming/ and their results are rewritten under the same names.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def settled(self, ref: ObjectRef) -> Settled | None:
        rows, _ = self._execute(
            "SELECT outcome, record FROM scans WHERE object_uri = ? AND object_version = ? AND retryable = 0",
            (ref.uri, ref.identity),
        )
        if not rows or not rows[0][0]:
            return None
        outcome, record = rows[0]
        return Settled(outcome, json.loads(record).get("location", "") if record else "")

    def record(self, record: StatusRecord) -> bool:
        _, changed = self._execute(
            "INSERT INTO scans (object_uri, object_version, outcome, retryable, record) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (object_uri, object_version) DO UPDATE SET outcome = excluded.outcome, "
            f"retryable = excluded.retryable, record = excluded.record WHERE {_SUPERSEDED}",
            (
                record.ref.uri,
                record.ref.identity,
                record.outcome,
                int(record.retryable),
                json.dumps(record.as_item()),
                record.generation or 0,
            ),
        )
        return changed == 1

    def used_before(self, ref: ObjectRef) -> bool:
        rows, _ = self._execute(
            "SELECT 1 FROM scans WHERE object_uri = ? AND object_version != ? LIMIT 1", (ref.uri, ref.identity)
        )
        return bool(rows)

    def count_failure(self, ref: ObjectRef) -> int | None:
        rows, _ = self._execute(
            "INSERT INTO scans (object_uri, object_version, failures) VALUES (?, ?, 1) "
            f"ON CONFLICT (object_uri, object_version) DO UPDATE SET failures = failures + 1 WHERE {_OPEN} "
            "RETURNING failures",
            (ref.uri, ref.identity),
        )
        return int(rows[0][0]) if rows else None

    def records(self) -> list[dict[str, Any]]:
        """Every settled record (for `medfn watch`'s summary and for tests)."""
        rows, _ = self._execute("SELECT record FROM scans WHERE outcome IS NOT NULL ORDER BY object_uri")
        return [json.loads(row[0]) for row in rows]

    def _execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> tuple[list[tuple[Any, ...]], int]:
        """The rows and the count of rows changed, read before another thread's statement runs."""
        try:
            with self._lock:
                cursor = self._db.execute(sql, parameters)
                return cursor.fetchall(), cursor.rowcount
        except sqlite3.OperationalError as exc:  # locked past the timeout, disk full, ...
            raise StorageUnavailable("the local status table could not be written") from exc
