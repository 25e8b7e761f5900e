"""A dynamic batcher for one model version, as Triton's: queue, gather, run once, scatter.

Callers `submit()` one request's tensors and get a `concurrent.futures.Future`: the event loop
awaits it (`asyncio.wrap_future`) without holding a thread, a worker thread can block on it.
One thread per model version gathers queued requests into a batch (up to `max_batch_size`
rows, waiting at most `max_queue_delay_ms` for the oldest), runs the session once on the
concatenated inputs, and hands each caller its own rows back. Requests only join a batch
when their tensors agree on everything but the batch axis; the rest wait for the next batch.

A request that fails inside a batch fails alone: if the batched run raises, every request in
it is re-run by itself, so only the request that cannot run gets the error. Inputs are
validated against `model.toml` before they are queued, so that path is rare.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from medfn.serving.batching.policy import BatchingPolicy
from medfn.serving.batching.stats import BatchStats

log = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]
# (inputs, output names) -> outputs: one session run, e.g. `Model.execute`
Execute = Callable[[Tensors, list[str]], Tensors]
# what must match for two requests to share a batch: per input, its dtype and non-batch shape
Signature = tuple[tuple[str, str, tuple[int, ...]], ...]


@dataclass(eq=False)
class _Queued:
    inputs: Tensors
    outputs: list[str] | None
    rows: int
    signature: Signature | None  # None: no common batch axis, so it runs alone
    enqueued: float = field(default_factory=time.monotonic)
    future: Future[Tensors] = field(default_factory=Future)


def _describe(inputs: Tensors) -> tuple[int, Signature | None]:
    rows = {array.shape[0] if array.ndim else -1 for array in inputs.values()}
    if len(rows) != 1 or -1 in rows:
        return 1, None
    signature = tuple(sorted((name, a.dtype.str, tuple(a.shape[1:])) for name, a in inputs.items()))
    return rows.pop(), signature


class DynamicBatcher:
    def __init__(self, label: str, execute: Execute, output_names: list[str], policy: BatchingPolicy) -> None:
        self.label = label  # "model v1", for logs and the thread's name
        self.policy = policy
        self.stats = BatchStats()
        self._execute = execute
        self._output_names = output_names
        self._queue: deque[_Queued] = deque()
        self._wakeup = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=f"batcher {label}", daemon=True)
        self._thread.start()

    def submit(self, inputs: Tensors, outputs: list[str] | None = None) -> Future[Tensors]:
        """Queue one request (already validated); its future gets its outputs or its error."""
        rows, signature = _describe(inputs)
        queued = _Queued(inputs, outputs, rows, signature)
        with self._wakeup:
            if self._closed:
                raise RuntimeError(f"the batcher of {self.label} is closed")
            self._queue.append(queued)
            self._wakeup.notify()
        return queued.future

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()
        self._thread.join()

    # -- the batcher's thread ----------------------------------------------------------------

    def _serve(self) -> None:
        while (batch := self._next_batch()) is not None:
            live = [q for q in batch if q.future.set_running_or_notify_cancel()]  # drop abandoned
            if live:
                self._run(live)

    def _next_batch(self) -> list[_Queued] | None:
        with self._wakeup:
            while not self._queue and not self._closed:
                self._wakeup.wait()
            if not self._queue:
                return None
            deadline = self._queue[0].enqueued + self.policy.max_queue_delay_ms / 1000.0
            while not self._closed and self._company_may_come():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.wait(remaining)
            rows = self._batchable_rows()
            return [self._queue.popleft() for _ in range(self.policy.cut(rows))]

    def _company_may_come(self) -> bool:
        """Whether a request arriving now could still join the oldest one's batch."""
        rows = self._batchable_rows()
        joinable = self._queue[0].signature is not None and len(rows) == len(self._queue)
        return joinable and sum(rows) < self.policy.full

    def _batchable_rows(self) -> list[int]:
        """Rows of the queued requests, from the oldest, that could share its batch."""
        head = self._queue[0]
        if head.signature is None:
            return [head.rows]
        rows = []
        for queued in self._queue:
            if queued.signature != head.signature:
                break  # keep arrival order: a different shape starts the next batch
            rows.append(queued.rows)
        return rows

    def _run(self, batch: list[_Queued]) -> None:
        started = time.monotonic()
        queue_seconds = sum(started - q.enqueued for q in batch)
        if len(batch) == 1:
            self._run_alone(batch[0])
        else:
            self._run_together(batch)
        rows = sum(q.rows for q in batch)
        self.stats.batch(rows, len(batch), queue_seconds, time.monotonic() - started)

    def _run_together(self, batch: list[_Queued]) -> None:
        rows = sum(q.rows for q in batch)
        try:
            stacked = {name: np.concatenate([q.inputs[name] for q in batch]) for name in batch[0].inputs}
            outputs = self._execute(stacked, self._output_names)
            if any(array.ndim == 0 or array.shape[0] != rows for array in outputs.values()):
                raise ValueError("an output has no batch axis to split")
        except Exception:
            log.warning(
                "a batch of %d requests of %s failed; running each alone", len(batch), self.label, exc_info=True
            )
            self.stats.fallback()
            for queued in batch:
                self._run_alone(queued)
            return
        start = 0
        for queued in batch:
            end = start + queued.rows
            wanted = queued.outputs or self._output_names
            queued.future.set_result({name: outputs[name][start:end] for name in wanted})
            start = end

    def _run_alone(self, queued: _Queued) -> None:
        try:
            queued.future.set_result(self._execute(queued.inputs, queued.outputs or self._output_names))
        except Exception as exc:
            self.stats.failure()
            queued.future.set_exception(exc)
