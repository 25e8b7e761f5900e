"""How routes call the model: on a worker thread, or inline.

A server with concurrent callers (uvicorn under `medfn serve`, a container) runs
`session.run` on a worker thread so the event loop decodes the next request meanwhile. A
Lambda environment serves one request at a time, so there the thread hop only adds cost:
measured at ~0.4 ms a call under Mangum, more than the small model's own inference.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")
Runner = Callable[..., Awaitable[Any]]


async def run_inline(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)


def inference_runner(offload: bool) -> Runner:
    return run_in_threadpool if offload else run_inline
