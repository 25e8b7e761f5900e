"""The local usage store: one SQLite row per metered call, written off the request path.

`record` only appends to a buffer (about a microsecond); a background thread writes the
buffer every `flush_s` seconds, and `flush` writes it at once (at shutdown, in tests).
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections import deque
from dataclasses import fields
from operator import attrgetter
from pathlib import Path

from medfn.metering.record import UsageRecord

COLUMNS = [f.name for f in fields(UsageRecord)]
SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    timestamp REAL NOT NULL, api_key_id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL,
    status INTEGER NOT NULL, duration_ms REAL NOT NULL, billed_units INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL, request_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_by_key ON usage (api_key_id, timestamp);
"""
# dataclasses.astuple deep-copies each field: at a few thousand calls a second that was the
# flush thread's main cost, taken from the GIL the request path needs.
_ROW = attrgetter(*COLUMNS)
_ROW_PLACES = f"({', '.join('?' for _ in COLUMNS)})"
# Rows per INSERT statement. executemany gives up and retakes the GIL around every row's
# sqlite3_step, and under load each retake contends with the event loop's thread (server CPU
# and p99 both showed it: benchmarks/README.md). One statement of many rows is one step: the
# GIL changes hands once per thousand rows.
_ROWS_PER_INSERT = 1000


class SqliteMeter:
    def __init__(self, path: Path, flush_s: float = 1.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._pending: deque[UsageRecord] = deque()  # append and popleft are thread-safe
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.executescript(SCHEMA)
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_every, args=(flush_s,), daemon=True, name="usage-flush")
        self._flusher.start()

    def record(self, usage: UsageRecord) -> None:
        self._pending.append(usage)

    def flush(self) -> None:
        with self._lock:
            batch = [self._pending.popleft() for _ in range(len(self._pending))]
            if batch:
                with self._db:
                    for start in range(0, len(batch), _ROWS_PER_INSERT):
                        rows = batch[start : start + _ROWS_PER_INSERT]
                        self._db.execute(_insert(len(rows)), [value for row in rows for value in _ROW(row)])

    def _flush_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._flusher.join(timeout=5)
        self.flush()
        self._db.close()

    def calls_since(self, api_key_id: str, since: float) -> int:
        """Calls a key made since `since`: what a restarted gateway counts against quotas."""
        self.flush()
        row = self._db.execute(
            "SELECT COUNT(*) FROM usage WHERE api_key_id = ? AND timestamp >= ?", (api_key_id, since)
        ).fetchone()
        return int(row[0])


@functools.lru_cache(maxsize=4)  # a full chunk's statement, and the last, shorter one's
def _insert(rows: int) -> str:
    return f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES {', '.join([_ROW_PLACES] * rows)}"


def read_usage(path: Path) -> list[UsageRecord]:
    with sqlite3.connect(path) as db:
        rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM usage ORDER BY timestamp").fetchall()
    return [UsageRecord(*row) for row in rows]
