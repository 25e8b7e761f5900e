"""ONNX Runtime sessions: execution providers and threads chosen for the machine we are on."""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

from medfn.errors import BadRequest

log = logging.getLogger(__name__)

# Preference order: a GPU when present, the CPU always.
_PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
_CUDA = "CUDAExecutionProvider"


@dataclass(frozen=True)
class Device:
    """Where a session runs. `kind` is an OrtValue device name: "cpu" or "cuda"."""

    kind: str = "cpu"
    index: int = 0

    @property
    def label(self) -> str:
        return self.kind if self.kind == "cpu" else f"{self.kind}:{self.index}"


CPU = Device()


def available_cores() -> int:
    """Cores this process may run on (Lambda: the vCPUs its memory size buys)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def choose_providers(requested: str | None = None) -> list[str]:
    """`MEDFN_PROVIDERS=CPUExecutionProvider` forces a choice; otherwise CUDA first when present."""
    available = set(ort.get_available_providers())
    wanted = [p for p in (requested or os.environ.get("MEDFN_PROVIDERS", "")).split(",") if p]
    chosen = [p for p in wanted if p in available]
    if _CUDA in wanted and _CUDA not in available:
        # e.g. the CPU onnxruntime wheel installed over onnxruntime-gpu: say so, then serve anyway
        log.warning(
            "CUDA was requested but this onnxruntime has no %s (it has %s); falling back to CPU",
            _CUDA,
            sorted(available),
        )
    return chosen or [p for p in _PREFERRED_PROVIDERS if p in available]


def use_device(kind: str) -> str | None:
    """`--device` of the worker commands, set before any model loads. "cuda": the CUDA provider,
    and no CPU fallback (MEDFN_REQUIRE_CUDA=1: a model that lands on the CPU is not ready);
    "cpu": the CPU provider alone; "auto": MEDFN_PROVIDERS, else CUDA when onnxruntime offers it.
    Returns why "cuda" is refused outright (this onnxruntime has no CUDA provider), else None."""
    if kind == "cuda":
        if _CUDA not in ort.get_available_providers():
            return (
                "--device cuda: this onnxruntime has no CUDAExecutionProvider (the CPU wheel; install "
                "onnxruntime-gpu, the `gpu` extra, on a machine with an NVIDIA driver); not running on the CPU instead"
            )
        os.environ["MEDFN_PROVIDERS"] = f"{_CUDA},CPUExecutionProvider"
        os.environ["MEDFN_REQUIRE_CUDA"] = "1"
    elif kind == "cpu":
        os.environ["MEDFN_PROVIDERS"] = "CPUExecutionProvider"
        os.environ.pop("MEDFN_REQUIRE_CUDA", None)
    return None


def intra_op_threads(threads: int | None = None) -> int:
    """`threads`, else `MEDFN_THREADS`, else every core this process may use."""
    return threads or int(os.environ.get("MEDFN_THREADS", 0)) or available_cores()


def session_options(threads: int | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads(threads)
    options.inter_op_num_threads = 1
    # Idle ORT threads spin by default and burn a core between requests, a core the server's other
    # work needs (benchmarks/README.md has what it cost). Sleep instead.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def make_session(path: Path, threads: int | None = None, providers: str | None = None) -> ort.InferenceSession:
    chosen = choose_providers(providers)
    session = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=chosen)
    active = session.get_providers()
    if _CUDA in chosen and _CUDA not in active:
        # onnxruntime-gpu without a driver, libcudart or cuDNN: ORT itself only logs at error level
        log.warning(
            "CUDA was requested but is not usable here (no GPU, driver or CUDA libraries); running %s on CPU", path.name
        )
    if os.environ.get("MEDFN_REQUIRE_CUDA", "") == "1" and active[0] != _CUDA:
        raise RuntimeError(f"MEDFN_REQUIRE_CUDA=1 but {path.name} runs on {active[0]}")
    return session


class OverlapSessions:
    """The sessions of one model on the CPU, for callers that may overlap (a server's threads).

    The main session's intra-op threads span every core: the lowest latency for a call alone.
    A call that starts while others already hold half the cores or more gets a one-thread
    session instead (on 2 cores: any call that is not alone): the cores are taken, and
    splitting each operator over threads that then wait for each other only adds
    synchronisation (less CPU a request and a higher rate: benchmarks/README.md). The main
    session goes to the next call as soon as it is free, so on a many-core machine a steady pair
    of callers does not leave it idle.

    The one-thread session is made at the first overlap, from the artifact verified again (a
    one-time build and the memory of a second session), so a process whose calls never overlap
    (a Lambda environment, one request at a time; a batcher's single thread) never pays for it.
    """

    def __init__(
        self, main: ort.InferenceSession, make_narrow: Callable[[], ort.InferenceSession], threads: int
    ) -> None:
        self.main = main
        self._make_narrow = make_narrow
        self._main_below = max(1, threads // 2)  # calls running elsewhere, at most, for main to be handed out
        self._counting = threading.Lock()
        self._running = 0
        self._main_busy = False
        self._building = threading.Lock()
        self._narrow: ort.InferenceSession | None = None

    def acquire(self) -> tuple[ort.InferenceSession, bool]:
        """The session for a call starting now, and whether it is the main one: hand that to
        `release()` when the call ends."""
        with self._counting:
            others = self._running
            self._running += 1
            if not self._main_busy and others < self._main_below:
                self._main_busy = True
                return self.main, True
        return self._narrow or self._build_narrow(), False

    def release(self, main: bool) -> None:
        with self._counting:
            self._running -= 1
            if main:
                self._main_busy = False

    def _build_narrow(self) -> ort.InferenceSession:
        with self._building:  # one call builds it; calls overlapping meanwhile wait for it
            if self._narrow is None:
                try:
                    self._narrow = self._make_narrow()
                    return_freed_memory()
                except Exception:  # out of memory, say: overlapping calls share the main session
                    log.exception("no one-thread session; overlapping calls share the main one")
                    self._narrow = self.main
            return self._narrow


def return_freed_memory() -> None:
    """Give the OS back what glibc's allocator holds freed. Building a session parses the
    whole model and copies its weights, then frees the copies; made on a worker thread (as
    OverlapSessions makes its second one), that memory stays in the thread's malloc arena,
    which glibc does not shrink by itself, so the server stays that much larger
    (benchmarks/README.md has the figures). Not glibc: a no-op."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # macOS, musl: no libc.so.6 or no malloc_trim
        pass


def overlap_sessions(
    session: ort.InferenceSession, make_narrow: Callable[[], ort.InferenceSession]
) -> OverlapSessions | None:
    """OverlapSessions for a CPU session with more than one intra-op thread, else None: a
    one-thread session runs as narrowly as it can already, and a GPU session's operators do
    not split over CPU cores. `make_narrow` builds the model's one-thread CPU session."""
    threads = intra_op_threads()
    if session_device(session) != CPU or threads == 1:
        return None
    return OverlapSessions(session, make_narrow, threads)


def session_device(session: ort.InferenceSession) -> Device:
    if session.get_providers()[0] != _CUDA:
        return CPU
    options = session.get_provider_options().get(_CUDA, {})
    return Device("cuda", int(options.get("device_id", 0)))


def run_session(
    session: ort.InferenceSession, names: Sequence[str], inputs: dict[str, np.ndarray], device: Device | None = None
) -> list[np.ndarray]:
    """One run. On a GPU through I/O binding: each input is copied to the device once, as one
    contiguous block, and each output fetched once, with no staging copies around `run`.

    Inputs reach here with the names, datatypes and shapes model.toml allows, so what the
    graph still refuses lies in their values or sizes (a token id past the vocabulary, a
    series longer than the positional encoding): the caller's 400, not a server error.
    """
    try:
        if device is None or device.kind == "cpu":
            return [_as_array(value) for value in session.run(list(names), inputs)]
        return run_bound(session, names, inputs, device)
    except (InvalidArgument, Fail) as exc:
        raise BadRequest("the model cannot run on these input values or sizes (ONNX Runtime refused them)") from exc


def _as_array(value: Any) -> np.ndarray:
    """An output as an array: scikit-learn's ZipMap gives a list of {class: p} per row, read here
    as [N, classes] with the classes in their sorted order."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return np.asarray([[row[key] for key in sorted(row)] for row in value], dtype=np.float32)
    return np.asarray(value)


def run_bound(
    session: ort.InferenceSession, names: Sequence[str], inputs: dict[str, np.ndarray], device: Device
) -> list[np.ndarray]:
    binding = session.io_binding()
    for name, array in inputs.items():
        on_device = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), device.kind, device.index)
        binding.bind_ortvalue_input(name, on_device)
    for name in names:
        binding.bind_output(name, device.kind, device.index)  # ORT allocates it there, sized by the run
    session.run_with_iobinding(binding)
    outputs: list[np.ndarray] = binding.copy_outputs_to_cpu()
    return outputs
