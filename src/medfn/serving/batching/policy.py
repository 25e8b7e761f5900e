"""`[dynamic_batching]` in `model.toml`, as Triton's `dynamic_batching` block.

    max_batch_size = 32            # top level: the most rows one session run may take
    [dynamic_batching]
    max_queue_delay_ms = 2.0       # how long the oldest queued request may wait for company
    preferred_batch_sizes = [8, 16, 32]   # optional

Without the table, or with `max_batch_size = 0` (the graph has no batch axis), every request
runs alone, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BatchingPolicy:
    max_batch_size: int
    max_queue_delay_ms: float = 0.0
    preferred_batch_sizes: tuple[int, ...] = ()

    @classmethod
    def of(cls, model: str, max_batch_size: int, table: dict[str, Any] | None) -> BatchingPolicy | None:
        """`model`'s policy from its `[dynamic_batching]` table, or None when it does not batch."""
        if table is None or max_batch_size <= 0:
            return None
        delay = float(table.get("max_queue_delay_ms", 0.0))
        if delay < 0:
            raise ValueError(f"model {model}: max_queue_delay_ms must be >= 0")
        preferred = tuple(sorted({int(size) for size in table.get("preferred_batch_sizes", ())}))
        if any(not 0 < size <= max_batch_size for size in preferred):
            raise ValueError(f"model {model}: preferred_batch_sizes must lie in 1..max_batch_size")
        return cls(max_batch_size, delay, preferred)

    @property
    def full(self) -> int:
        """Rows at which a batch runs without waiting out the delay."""
        return self.preferred_batch_sizes[-1] if self.preferred_batch_sizes else self.max_batch_size

    def cut(self, rows: list[int]) -> int:
        """How many of the queued requests (rows each, in order) the next batch takes.

        The longest prefix that fits `max_batch_size`; with preferred sizes, the longest prefix
        whose rows add up to one of them, when there is one. Always at least one request.
        """
        total, fits = 0, 0
        for count in rows:
            if total + count > self.max_batch_size:
                break
            total, fits = total + count, fits + 1
        if not fits:
            return 1  # a request larger than max_batch_size runs alone
        if self.preferred_batch_sizes:
            sums = [sum(rows[:n]) for n in range(1, fits + 1)]
            preferred = [n for n, size in enumerate(sums, start=1) if size in self.preferred_batch_sizes]
            if preferred:
                return preferred[-1]
        return fits
