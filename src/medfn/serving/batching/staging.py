"""Where a batch is assembled: reused host buffers, page-locked when the model runs on CUDA.

A batch's inputs are the requests' rows copied one after another into one contiguous block per
input. Allocating that block for every batch costs a fresh allocation and, for blocks past
glibc's mmap threshold (a batch of 32 segmenter images is 2 MB), its page faults every time;
here each input keeps a buffer of `max_batch_size` rows and every batch fills its first rows.

On a CUDA model the buffers are also page-locked (cudaHostRegister): the one host-to-device
copy of each input per run (I/O binding, medfn.serving.sessions.run_bound) then goes by DMA
straight from them, instead of through the driver's own staging copy. Page-locking is asked of
the CUDA runtime only where a CUDA session exists; without one, or if the runtime refuses,
the buffers are ordinary memory and everything else is the same.
"""

from __future__ import annotations

import ctypes
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

# Keys of buffers kept: an input's name, dtype and shape past the batch axis. Models whose inputs
# vary in length (tokens, series) would otherwise keep one buffer per length ever seen.
_KEPT = 8
Pin = Callable[[np.ndarray], bool]  # page-locks an array's memory; False when it could not


class StagingArea:
    def __init__(self, max_rows: int, pin: Pin | None = None) -> None:
        self.max_rows = max_rows
        self._pin = pin
        self._buffers: OrderedDict[tuple[str, str, tuple[int, ...]], np.ndarray] = OrderedDict()
        self.pinned = 0  # buffers page-locked so far (the model's /v2 parameters could show it)

    def assemble(self, parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The requests' inputs stacked along the batch axis, in views of the kept buffers."""
        stacked = {}
        for name, first in parts[0].items():
            arrays = [part[name] for part in parts]
            rows = sum(array.shape[0] for array in arrays)
            buffer = self._buffer(name, first.dtype, tuple(first.shape[1:]), rows)
            np.concatenate(arrays, out=buffer[:rows])
            stacked[name] = buffer[:rows]
        return stacked

    def holds(self, array: np.ndarray) -> bool:
        """Whether `array` shares memory with a kept buffer (an output ONNX Runtime handed back in
        place of its input): such an output must be copied before the next batch overwrites it."""
        return any(np.may_share_memory(array, buffer) for buffer in self._buffers.values())

    def _buffer(self, name: str, dtype: np.dtype, tail: tuple[int, ...], rows: int) -> np.ndarray:
        key = (name, dtype.str, tail)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.shape[0] < rows:
            # room for the next power of two of rows (at most max_rows): grown rarely, never oversized
            capacity = max(rows, min(self.max_rows, 1 << max(0, rows - 1).bit_length()))
            buffer = np.empty((capacity, *tail), dtype=dtype)
            if self._pin is not None and buffer.nbytes and self._pin(buffer):
                self.pinned += 1
            self._buffers[key] = buffer
        self._buffers.move_to_end(key)
        while len(self._buffers) > _KEPT:
            self._buffers.popitem(last=False)  # its memory is unpinned when freed: see cuda_pin
        return buffer


def cuda_pin(device_kind: str) -> Pin | None:
    """cudaHostRegister for buffers of a model on `device_kind` "cuda", when the CUDA runtime loads
    here; None otherwise (CPU models, or no libcudart), and the buffers stay ordinary memory."""
    if device_kind != "cuda":
        return None
    runtime = _cuda_runtime()
    if runtime is None:
        log.warning("no CUDA runtime library found: batches are staged in pageable memory")
        return None
    return _Registrar(runtime)


def _cuda_runtime() -> ctypes.CDLL | None:
    # onnxruntime-gpu has loaded it already when a CUDA session exists; the names are its majors'
    for name in ("libcudart.so", "libcudart.so.13", "libcudart.so.12"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


class _Registrar:
    """Page-locks numpy buffers in place, and unlocks each when numpy frees it."""

    def __init__(self, runtime: ctypes.CDLL) -> None:
        self._register = runtime.cudaHostRegister
        self._register.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint]
        self._unregister = runtime.cudaHostUnregister
        self._unregister.argtypes = [ctypes.c_void_p]
        self._warned = False

    def __call__(self, buffer: np.ndarray) -> bool:
        address = buffer.ctypes.data
        status = self._register(address, buffer.nbytes, 0)  # cudaHostRegisterDefault
        if status != 0:
            if not self._warned:
                log.warning("cudaHostRegister refused a %d-byte batch buffer (error %d)", buffer.nbytes, status)
                self._warned = True
            return False
        _on_free(buffer, lambda: self._unregister(address))
        return True


def _on_free(buffer: np.ndarray, callback: Callable[[], object]) -> None:
    import weakref

    weakref.finalize(buffer, callback)
