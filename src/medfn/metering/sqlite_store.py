"""The local usage store: one SQLite row per metered call, written off the request path.

`record` only appends to a buffer (about a microsecond); a background thread writes the
buffer every `flush_s` seconds, and `flush` writes it at once (at shutdown, in tests).
"""

from __future__ import annotations

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
_INSERT = f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


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
                    self._db.executemany(_INSERT, map(_ROW, batch))

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


def read_usage(path: Path) -> list[UsageRecord]:
    with sqlite3.connect(path) as db:
        rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM usage ORDER BY timestamp").fetchall()
    return [UsageRecord(*row) for row in rows]
