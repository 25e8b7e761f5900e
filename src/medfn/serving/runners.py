"""Where a model call runs: inline on the event loop, or on a worker thread.

A Lambda environment serves one request at a time, so there every call runs inline: a thread
hop only adds cost, more than the small model's own inference. A server (uvicorn under
`medfn serve`, a container) has concurrent callers, and there the right place depends on how
long the call takes: `CostAwareRunner` decides per call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Runner(Protocol):
    """Awaits `fn(*args)` wherever the runner decides. `size` (tensor elements, body bytes)
    and `waits` (the call waits on a device, not the CPU) are hints it may use."""

    async def __call__(self, fn: Callable[..., T], /, *args: Any, size: int = 1, waits: bool = False) -> T: ...


# Calls whose expected cost is below this run inline. A thread hop costs 0.1-0.25 ms of CPU and a
# GIL handover; a call this short blocks the loop for less than a few hops would cost.
INLINE_BELOW_S = 0.001
# Weight of the newest call in a function's running estimate of its cost per unit of input.
_SMOOTHING = 0.2


async def run_inline(fn: Callable[..., T], /, *args: Any, size: int = 1, waits: bool = False) -> T:
    """Lambda's runner. `size` and `waits` are hints for CostAwareRunner; here everything runs inline."""
    return fn(*args)


class CostAwareRunner:
    """Cheap calls inline on the event loop; costly ones on a FIFO pool of as many threads as cores.

    Each function (a bound method counts per object: one model's `run`, another's `predict`)
    keeps a running estimate of its cost per unit of input (`size`: tensor elements, body
    bytes), taken from every call wherever it ran; a call is expected to cost that times its
    size. So one request of 20,000 rows to a model whose single rows run inline goes to the
    pool, instead of holding the event loop. A function never seen yet goes to the pool.

    Cost is the calling thread's CPU time, not wall time: on a pool thread wall time also
    counts the wait for the GIL, which under load would push even a 30 us call past the bar.
    So a call that waits costs almost nothing by this measure: one waiting for its dynamic
    batch is never given to the runner (the plane awaits the batch on the loop), and one waiting for a GPU says
    `waits=True` and always goes to the pool.

    The pool has as many threads as cores, not Starlette's 40: with 32 callers in flight, 32 busy
    threads fight over the GIL. Figures for both choices: benchmarks/README.md.
    """

    def __init__(self, workers: int, inline_below_s: float = INLINE_BELOW_S) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medfn-model")
        self._inline_below_s = inline_below_s
        self._unit_cost_s: dict[tuple[int, Any], float] = {}

    def unit_cost_s(self, fn: Callable[..., Any]) -> float | None:
        """`fn`'s running estimate, in CPU seconds per unit of size; None before its first call."""
        return self._unit_cost_s.get(_key(fn))

    async def __call__(self, fn: Callable[..., T], /, *args: Any, size: int = 1, waits: bool = False) -> T:
        key, size = _key(fn), max(1, size)
        unit_cost = self._unit_cost_s.get(key)
        if unit_cost is not None and unit_cost * size < self._inline_below_s and not waits:
            # Yield to the loop once first, so the requests one turn read run after its next poll: run at
            # once, the callers answered last in a turn missed every later turn and got half the rate.
            await asyncio.sleep(0)
            return self._timed(key, size, fn, args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._timed, key, size, fn, args)

    def _timed(self, key: tuple[int, Any], size: int, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        started = time.thread_time()
        try:
            return fn(*args)
        finally:
            spent = (time.thread_time() - started) / size
            previous = self._unit_cost_s.get(key)
            self._unit_cost_s[key] = spent if previous is None else previous + _SMOOTHING * (spent - previous)


def _key(fn: Callable[..., Any]) -> tuple[int, Any]:
    # A bound method is a new object on every attribute access: key it by (object, function).
    return id(getattr(fn, "__self__", None)), getattr(fn, "__func__", fn)


def server_runner() -> CostAwareRunner:
    """The runner of a server with concurrent callers: a pool as wide as the cores."""
    from medfn.serving.sessions import available_cores

    return CostAwareRunner(available_cores())
