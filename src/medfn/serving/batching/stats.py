"""What a batcher did: counts behind `GET /metrics` and `GET /v2/models/{m}` parameters."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StatsSnapshot:
    requests: int
    batches: int
    rows: int
    fallbacks: int  # batched runs that failed and were re-run one request at a time
    failures: int  # requests answered with an error
    queue_seconds: float  # summed over requests: enqueue -> their batch starts
    compute_seconds: float  # summed over session runs
    batch_sizes: dict[int, int]  # rows in a batch -> how many batches had that many

    @property
    def mean_batch_size(self) -> float:
        return self.rows / self.batches if self.batches else 0.0

    @property
    def max_batch_size(self) -> int:
        return max(self.batch_sizes, default=0)


@dataclass
class BatchStats:
    """Written by the batcher's thread, read by request handlers: one lock guards it."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _requests: int = 0
    _rows: int = 0
    _fallbacks: int = 0
    _failures: int = 0
    _queue_seconds: float = 0.0
    _compute_seconds: float = 0.0
    _sizes: Counter[int] = field(default_factory=Counter)

    def batch(self, rows: int, requests: int, queue_seconds: float, compute_seconds: float) -> None:
        with self._lock:
            self._sizes[rows] += 1
            self._rows += rows
            self._requests += requests
            self._queue_seconds += queue_seconds
            self._compute_seconds += compute_seconds

    def fallback(self) -> None:
        with self._lock:
            self._fallbacks += 1

    def failure(self) -> None:
        with self._lock:
            self._failures += 1

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(
                requests=self._requests,
                batches=sum(self._sizes.values()),
                rows=self._rows,
                fallbacks=self._fallbacks,
                failures=self._failures,
                queue_seconds=self._queue_seconds,
                compute_seconds=self._compute_seconds,
                batch_sizes=dict(sorted(self._sizes.items())),
            )
