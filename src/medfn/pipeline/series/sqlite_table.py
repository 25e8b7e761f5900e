"""The series table in SQLite: `medfn watch`'s, beside its status table in DIR/status.sqlite3."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from medfn.errors import StorageUnavailable
from medfn.pipeline.series.table import Member, SeriesKey, SeriesState
from medfn.pipeline.types import ObjectRef

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id            TEXT PRIMARY KEY,            -- SeriesKey.id
    arrived       INTEGER NOT NULL,
    last_arrival  REAL NOT NULL,
    expected      INTEGER,
    processed     INTEGER NOT NULL DEFAULT 0,
    claimed_until REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS series_instances (
    series   TEXT NOT NULL,
    sop      TEXT NOT NULL,
    ref      TEXT NOT NULL,                    -- the ObjectRef's fields as JSON
    excluded TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (series, sop)
);
"""
_COLUMNS = "id, arrived, last_arrival, expected, processed, claimed_until"


class SqliteSeriesTable:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def arrive(self, key: SeriesKey, member: Member, expected: int | None, now: float) -> tuple[SeriesState, bool]:
        ref = json.dumps(asdict(member.ref))
        with self._transaction() as db:
            new = (
                db.execute(
                    "INSERT OR IGNORE INTO series_instances (series, sop, ref) VALUES (?, ?, ?)",
                    (key.id, member.sop_instance_uid, ref),
                ).rowcount
                == 1
            )
            if new:
                db.execute(
                    "INSERT INTO series (id, arrived, last_arrival, expected) VALUES (?, 1, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET arrived = arrived + 1, last_arrival = excluded.last_arrival, "
                    "expected = COALESCE(series.expected, excluded.expected)",
                    (key.id, now, expected),
                )
            row = db.execute(f"SELECT {_COLUMNS} FROM series WHERE id = ?", (key.id,)).fetchone()
        return _state(row), new

    def state(self, key: SeriesKey) -> SeriesState | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM series WHERE id = ?", (key.id,))
        return _state(rows[0]) if rows else None

    def members(self, key: SeriesKey) -> list[Member]:
        rows = self._query("SELECT sop, ref, excluded FROM series_instances WHERE series = ? ORDER BY sop", (key.id,))
        return [Member(sop, ObjectRef(**json.loads(ref)), excluded) for sop, ref, excluded in rows]

    def claim(self, key: SeriesKey, generation: int, now: float, lease_s: float) -> bool:
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE series SET claimed_until = ? WHERE id = ? AND processed < ? AND claimed_until < ?",
                (now + lease_s, key.id, generation, now),
            ).rowcount
        return changed == 1

    def finish(self, key: SeriesKey, generation: int) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE series SET processed = MAX(processed, ?), claimed_until = 0 WHERE id = ?", (generation, key.id)
            )

    def release(self, key: SeriesKey, until: float = 0.0) -> None:
        with self._transaction() as db:
            db.execute("UPDATE series SET claimed_until = ? WHERE id = ?", (until, key.id))

    def exclude(self, key: SeriesKey, sop_instance_uid: str, reason: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE series_instances SET excluded = ? WHERE series = ? AND sop = ?",
                (reason, key.id, sop_instance_uid),
            )

    def due(self, now: float, settle_s: float) -> list[SeriesKey]:
        """Series with instances not yet answered, settled by `now`, and not claimed: the local
        stand-in for AWS's delayed check messages."""
        rows = self._query(f"SELECT {_COLUMNS} FROM series WHERE processed < arrived AND claimed_until < ?", (now,))
        return [state.key for state in map(_state, rows) if state.settles_at(settle_s) <= now]

    def _query(self, sql: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._transaction() as db:
            return db.execute(sql, parameters).fetchall()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self._lock)


class _Transaction:
    """One statement group at a time, atomic, with SQLite's failures as StorageUnavailable."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db, self._lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            self._lock.release()
            raise StorageUnavailable("the local series table could not be written") from exc
        return self._db

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        try:
            self._db.execute("ROLLBACK" if kind else "COMMIT")
        except sqlite3.OperationalError as failure:
            if kind is None:
                raise StorageUnavailable("the local series table could not be written") from failure
        finally:
            self._lock.release()
        if isinstance(exc, sqlite3.OperationalError):
            raise StorageUnavailable("the local series table could not be written") from exc


def _state(row: tuple[Any, ...]) -> SeriesState:
    series, arrived, last_arrival, expected, processed, claimed_until = row
    return SeriesState(SeriesKey.parse(series), arrived, last_arrival, expected, processed, claimed_until)
