"""ONNX Runtime sessions: execution providers and threads chosen for the machine we are on."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)

# Preference order: a GPU when present, the CPU always.
_PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def available_cores() -> int:
    """Cores this process may run on (Lambda: the vCPUs its memory size buys)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def choose_providers(requested: str | None = None) -> list[str]:
    """`MEDFN_PROVIDERS=CPUExecutionProvider` forces a choice; otherwise CUDA first when present."""
    available = set(ort.get_available_providers())
    wanted = (requested or os.environ.get("MEDFN_PROVIDERS", "")).split(",")
    chosen = [p for p in wanted if p in available]
    return chosen or [p for p in _PREFERRED_PROVIDERS if p in available]


def session_options(threads: int | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or int(os.environ.get("MEDFN_THREADS", 0)) or available_cores()
    options.inter_op_num_threads = 1
    # Idle ORT threads spin by default and burn a core between requests: measured as ~40%
    # fewer small-model requests/s on 2 vCPUs. Sleep instead.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def make_session(path: Path, threads: int | None = None, providers: str | None = None) -> ort.InferenceSession:
    chosen = choose_providers(providers)
    session = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=chosen)
    active = session.get_providers()
    if "CUDAExecutionProvider" in chosen and "CUDAExecutionProvider" not in active:
        log.warning("CUDA was requested but is not usable here; running %s on CPU", path.name)
    return session
