"""Lambda SnapStart hooks: what must not be shared by every environment restored from a snapshot.

SnapStart snapshots a function after init and resumes many environments from that one
image. Whatever init made once is then identical in all of them: the state of `random` and
of numpy's global generator, and open connections (an S3 client's pooled sockets point at a
peer that long forgot them). After a restore we re-seed from the OS and drop clients so the
next call makes fresh ones. The hooks come from `snapshot_restore_py`, which exists only in
Lambda's managed Python runtimes; elsewhere `register` does nothing.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any, Protocol

log = logging.getLogger(__name__)


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


def register(clients: list[Any]) -> bool:
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
