"""Cold start: a process's one-time start-up, and what a SnapStart restore must redo.

Start-up (imports of FastAPI, pydantic, numpy, onnxruntime; loading models; building the app)
allocates ~100,000 long-lived objects and next to no garbage. `collector_paused` keeps the
cyclic garbage collector from walking them again and again while they are made, then freezes
them out of every later collection (benchmarks/README.md, "Why the code is the way it is", has
the measured saving).

SnapStart snapshots a function after init and resumes many environments from that one image,
so whatever init made once is identical in all of them: the state of `random` and of numpy's
global generator, and open connections. After a restore we re-seed from the OS and reconnect.
The hooks come from `snapshot_restore_py`, which exists only in Lambda's managed runtimes.
"""

from __future__ import annotations

import gc
import logging
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

log = logging.getLogger(__name__)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Collector off for the block; then what the block made is frozen and the collector resumes.

    Only for code that runs once per process (a Lambda init, a server's start): freezing keeps
    everything alive at that moment out of collection for good. The few cycles start-up leaves
    as garbage are frozen with the rest: collecting them first would cost what this saves.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


class Reconnectable(Protocol):
    def reconnect(self) -> None: ...


def reseed() -> None:
    random.seed(os.urandom(32))
    import numpy as np  # already imported by the runtime; importing here keeps this module light

    np.random.seed(int.from_bytes(os.urandom(4), "little"))


def before_snapshot(clients: list[Reconnectable]) -> None:
    """Drop clients so the snapshot holds no half-open sockets."""
    for client in clients:
        client.reconnect()


def after_restore(clients: list[Reconnectable]) -> None:
    reseed()
    for client in clients:  # anything connected since the snapshot hook connects again
        client.reconnect()


def register_snapstart_hooks(clients: list[Any]) -> bool:
    """Register both hooks for `clients` (objects with `reconnect()`); True if registered."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:  # not on Lambda, or a runtime without SnapStart support
        return False
    reconnectable = [c for c in clients if callable(getattr(c, "reconnect", None))]
    register_before_snapshot(before_snapshot, reconnectable)
    register_after_restore(after_restore, reconnectable)
    log.info("SnapStart hooks registered (%d clients to reconnect)", len(reconnectable))
    return True
