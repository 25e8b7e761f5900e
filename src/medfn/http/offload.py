"""How routes call the model: on a worker thread, or inline.

A server with concurrent callers (uvicorn under `medfn serve`, a container) runs
`session.run` on a worker thread so the event loop decodes the next request meanwhile. A
Lambda environment serves one request at a time, so there the thread hop only adds cost:
measured at ~0.4 ms a call under Mangum, more than the small model's own inference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from starlette.concurrency import run_in_threadpool

if TYPE_CHECKING:
    from medfn.model import Model

T = TypeVar("T")
Runner = Callable[..., Awaitable[Any]]


async def run_inline(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)


def inference_runner(offload: bool) -> Runner:
    return run_in_threadpool if offload else run_inline


async def run_model(
    run: Runner, model: Model, inputs: dict[str, np.ndarray], outputs: list[str] | None
) -> dict[str, np.ndarray]:
    """Raw tensors through the model's batcher when a server gave it one, else as `run` says.

    The batcher is awaited on the event loop, not from a worker thread: a waiting request
    then holds no thread, so more requests can queue than the thread pool has threads.
    """
    model.ensure_ready()
    if model.batcher is not None:
        return await asyncio.wrap_future(model.batcher.submit(inputs, outputs))
    return await run(model.run, inputs, outputs)
