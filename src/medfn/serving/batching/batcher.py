"""A dynamic batcher for one model version, as Triton's: queue, gather, run once, scatter.

A thread (a pipeline worker, the CLI) `submit()`s one request's tensors and gets a
`concurrent.futures.Future` to block on; the event loop `submit_async()`s and awaits an asyncio
future without holding a thread. One thread per model version gathers queued requests into a
batch (up to `max_batch_size` rows), runs the session once on the inputs stacked in reused
buffers (medfn.serving.batching.staging: page-locked on CUDA), and hands each caller its own
rows back. Requests only join a batch when their tensors agree on everything but the batch
axis; the rest wait for the next batch.

When the batch runs, as Triton's dynamic batcher: at once when the queue holds a full batch
(`max_batch_size` rows, or the largest preferred size), else when its oldest request has
waited `max_queue_delay_ms`, or sooner when a request that cannot join it is queued behind.
Unlike Triton's, the delay is only waited while requests overlap: when no request of the
batches since the batcher was last idle arrived while another was queued or running (one
caller at a time), the next request to find it idle runs at once, so a lone caller pays no
batching delay; once requests overlap, the delay applies until a batch goes by without overlap.
An arrival wakes the batcher's thread only when it changes that decision (the first request,
a full batch, a request that cannot join): waking it for every arrival made it contend for the
GIL with the event loop once a request, for nothing (benchmarks/README.md has the figures).
The event loop's callers are answered with one wake-up of the loop per batch, not one a request.

A request that fails inside a batch fails alone: if the batched run raises, every request in
it is re-run by itself, so only the request that cannot run gets the error. Inputs are
validated against `model.toml` before they are queued, so that path is rare.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from threading import Condition, Thread
from typing import TYPE_CHECKING

import numpy as np

from medfn.serving.batching.policy import BatchingPolicy
from medfn.serving.batching.staging import StagingArea, cuda_pin
from medfn.serving.batching.stats import BatchStats

if TYPE_CHECKING:
    from medfn.serving.sessions import Device

log = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]
# (inputs, output names) -> outputs: one session run, e.g. `Model.execute`
Execute = Callable[[Tensors, list[str]], Tensors]
# what must match for two requests to share a batch: per input, its dtype and non-batch shape
Signature = tuple[tuple[str, str, tuple[int, ...]], ...]
Outcome = Tensors | BaseException


@dataclass(eq=False)
class _Queued:
    inputs: Tensors
    outputs: list[str] | None
    rows: int
    signature: Signature | None  # None: no common batch axis, so it runs alone
    enqueued: float = field(default_factory=time.monotonic)
    future: Future[Tensors] | None = None  # a thread's (submit)
    waiter: asyncio.Future[Tensors] | None = None  # an event loop's (submit_async)

    def claim(self) -> bool:
        """False for a request nobody waits for any more (cancelled): it is not run."""
        if self.future is not None:
            return self.future.set_running_or_notify_cancel()
        return self.waiter is not None and not self.waiter.cancelled()


def _describe(inputs: Tensors) -> tuple[int, Signature | None]:
    rows = {array.shape[0] if array.ndim else -1 for array in inputs.values()}
    if len(rows) != 1 or -1 in rows:
        return 1, None
    signature = tuple(sorted((name, a.dtype.str, tuple(a.shape[1:])) for name, a in inputs.items()))
    return rows.pop(), signature


class DynamicBatcher:
    def __init__(
        self,
        label: str,
        execute: Execute,
        output_names: list[str],
        policy: BatchingPolicy,
        device: Device | None = None,
    ) -> None:
        self.label = label  # "model v1", for logs and the thread's name
        self.policy = policy
        self.stats = BatchStats()
        self.staging = StagingArea(policy.max_batch_size, cuda_pin(device.kind if device else "cpu"))
        self._execute = execute
        self._output_names = output_names
        self._queue: deque[_Queued] = deque()
        self._queued_rows = 0
        self._running = False  # a batch has been taken and is being run
        self._overlapping = False  # since the batcher was last idle, a request came while another was in flight
        self._expect_company = False  # requests overlapped before the batcher was last idle
        self._wakeup = Condition()
        self._closed = False
        _switch_interval_from_env()
        self._thread = Thread(target=self._serve, name=f"batcher {label}", daemon=True)
        self._thread.start()

    def submit(self, inputs: Tensors, outputs: list[str] | None = None) -> Future[Tensors]:
        """Queue one request (already validated); its future gets its outputs or its error."""
        queued = _Queued(inputs, outputs, *_describe(inputs), future=Future())
        self._enqueue(queued)
        assert queued.future is not None
        return queued.future

    def submit_async(self, inputs: Tensors, outputs: list[str] | None = None) -> asyncio.Future[Tensors]:
        """`submit` for the running event loop: an asyncio future, answered on that loop."""
        waiter: asyncio.Future[Tensors] = asyncio.get_running_loop().create_future()
        self._enqueue(_Queued(inputs, outputs, *_describe(inputs), waiter=waiter))
        return waiter

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()
        self._thread.join()

    def _enqueue(self, queued: _Queued) -> None:
        with self._wakeup:
            if self._closed:
                raise RuntimeError(f"the batcher of {self.label} is closed")
            self._overlapping = self._overlapping or self._running or bool(self._queue)
            self._queue.append(queued)
            self._queued_rows += queued.rows
            head = self._queue[0]
            if (
                head is queued  # it may be idle, waiting for a first request
                or queued.signature is None
                or queued.signature != head.signature  # the head's batch can take no one else now
                or self._queued_rows >= self.policy.full  # a full batch may be waiting: run it now
            ):
                self._wakeup.notify()

    # -- the batcher's thread ----------------------------------------------------------------

    def _serve(self) -> None:
        while (batch := self._next_batch()) is not None:
            live = [q for q in batch if q.claim()]  # drop abandoned
            if live:
                self._run(live)

    def _next_batch(self) -> list[_Queued] | None:
        with self._wakeup:
            self._running = False
            if not self._queue:  # idle: the next request waits for company only if the last ones overlapped
                self._expect_company, self._overlapping = self._overlapping, False
            while not self._queue and not self._closed:
                self._wakeup.wait()
            if not self._queue:
                return None
            deadline = self._queue[0].enqueued + self.policy.max_queue_delay_ms / 1000.0
            while not self._closed and (self._overlapping or self._expect_company) and self._company_may_come():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.wait(remaining)
            rows = self._batchable_rows()
            batch = [self._queue.popleft() for _ in range(self.policy.cut(rows))]
            self._queued_rows -= sum(q.rows for q in batch)
            self._running = True
            return batch

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
            answers = [(batch[0], self._run_alone(batch[0]))]
        else:
            answers = self._run_together(batch)
        rows = sum(q.rows for q in batch)
        self.stats.batch(rows, len(batch), queue_seconds, time.monotonic() - started)
        _answer(answers)

    def _run_together(self, batch: list[_Queued]) -> list[tuple[_Queued, Outcome]]:
        rows = sum(q.rows for q in batch)
        try:
            outputs = self._execute(self.staging.assemble([q.inputs for q in batch]), self._output_names)
            if any(array.ndim == 0 or array.shape[0] != rows for array in outputs.values()):
                raise ValueError("an output has no batch axis to split")
            # an output in a staging buffer (an input handed back) would be overwritten by the next batch
            outputs = {name: a.copy() if self.staging.holds(a) else a for name, a in outputs.items()}
        except Exception:
            log.warning(
                "a batch of %d requests of %s failed; running each alone", len(batch), self.label, exc_info=True
            )
            self.stats.fallback()
            return [(queued, self._run_alone(queued)) for queued in batch]
        answers: list[tuple[_Queued, Outcome]] = []
        start = 0
        for queued in batch:
            end = start + queued.rows
            wanted = queued.outputs or self._output_names
            answers.append((queued, {name: outputs[name][start:end] for name in wanted}))
            start = end
        return answers

    def _run_alone(self, queued: _Queued) -> Outcome:
        try:
            return self._execute(queued.inputs, queued.outputs or self._output_names)
        except Exception as exc:
            self.stats.failure()
            return exc


def _switch_interval_from_env() -> None:
    """MEDFN_SWITCH_INTERVAL_MS: how long a thread waiting for the GIL waits before the holder must
    yield it (CPython's default 5 ms). After a session run on a GPU the batcher's thread waits that
    long for the event loop to let go before it can scatter and start the next batch, while the
    device idles; a shorter interval may keep a GPU busier. It cost CPU on the CPU proxy
    (benchmarks/README.md), so it is off unless asked for; benchmarks/gpu_throughput.py measures it."""
    wanted = os.environ.get("MEDFN_SWITCH_INTERVAL_MS", "")
    if wanted:
        sys.setswitchinterval(float(wanted) / 1000.0)


def _answer(answers: list[tuple[_Queued, Outcome]]) -> None:
    """Each caller its outcome: threads' futures directly, event loops' with one call a loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Tensors], Outcome]]] = {}
    for queued, outcome in answers:
        if queued.future is not None:
            if isinstance(outcome, BaseException):
                queued.future.set_exception(outcome)
            else:
                queued.future.set_result(outcome)
        elif queued.waiter is not None:
            by_loop.setdefault(queued.waiter.get_loop(), []).append((queued.waiter, outcome))
    for loop, replies in by_loop.items():
        try:
            loop.call_soon_threadsafe(_deliver, replies)
        except RuntimeError:  # the loop is closed: nobody is left to answer
            log.debug("an event loop closed before its batch was answered")


def _deliver(replies: list[tuple[asyncio.Future[Tensors], Outcome]]) -> None:
    """On the waiters' loop."""
    for waiter, outcome in replies:
        if waiter.done():  # cancelled meanwhile
            continue
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
