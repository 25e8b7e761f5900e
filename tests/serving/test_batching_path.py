"""The serving path that keeps an accelerator busy, on CPU: batches that form at once when full,
wake-ups only when they change what the batcher does, event-loop callers answered once a batch,
batches assembled in reused (on CUDA, page-locked) buffers. The CUDA part runs where a GPU is."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import numpy as np
import pytest

from medfn.serving.batching import BatchingPolicy, DynamicBatcher, staging
from medfn.serving.batching import batcher as batcher_module
from medfn.serving.batching.staging import StagingArea, cuda_pin
from medfn.serving.sessions import Device

HOUR_MS = 3_600_000.0  # a delay no test waits out: a batch that runs, ran because it was full


def doubled(inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    return {"y": inputs["x"] * 2}


def one_row(value: float, width: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((1, width), value, dtype=np.float32)}


class CountingCondition(threading.Condition):
    notified = 0

    def notify(self, n: int = 1) -> None:
        CountingCondition.notified += 1
        super().notify(n)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> type[CountingCondition]:
    CountingCondition.notified = 0
    monkeypatch.setattr(batcher_module, "Condition", CountingCondition)
    return CountingCondition


def test_a_lone_request_at_an_idle_batcher_runs_at_once() -> None:
    """Nothing queued or running: no company is coming, so an hour's delay is not waited."""
    batcher = DynamicBatcher("lone v1", doubled, ["y"], BatchingPolicy(max_batch_size=8, max_queue_delay_ms=HOUR_MS))
    for i in range(3):  # one caller at a time: each finds the batcher idle again
        assert batcher.submit(one_row(i)).result(timeout=30)["y"][0, 0] == 2 * i
    assert batcher.stats.snapshot().batch_sizes == {1: 3}
    batcher.close()


def test_after_requests_overlapped_the_next_one_waits_for_company() -> None:
    batcher = DynamicBatcher("busy v1", doubled, ["y"], BatchingPolicy(max_batch_size=2, max_queue_delay_ms=HOUR_MS))
    with batcher._wakeup:  # two callers at once: they overlap
        burst = [batcher.submit(one_row(i)) for i in range(2)]
    [f.result(timeout=30) for f in burst]
    first = batcher.submit(one_row(5))  # waits for company (an hour at most), as load was seen
    second = batcher.submit(one_row(6))  # and gets it: the batch is full
    assert (first.result(timeout=30)["y"][0, 0], second.result(timeout=30)["y"][0, 0]) == (10, 12)
    assert batcher.stats.snapshot().batch_sizes == {2: 2}
    batcher.close()


def test_a_full_batch_runs_at_once_and_only_the_first_and_the_full_arrival_wake_the_batcher(counted) -> None:
    batcher = DynamicBatcher("full v1", doubled, ["y"], BatchingPolicy(max_batch_size=8, max_queue_delay_ms=HOUR_MS))
    with batcher._wakeup:  # queued before the batcher's thread looks: they overlap, so it waits for company
        futures = [batcher.submit(one_row(i)) for i in range(7)]
    assert counted.notified == 1  # the first (the thread may be idle); six more cannot fill a batch of 8
    futures.append(batcher.submit(one_row(7)))
    assert counted.notified == 2  # the eighth fills it
    for i, future in enumerate(futures):  # an hour's delay: these came back because the batch was full
        assert future.result(timeout=30)["y"][0, 0] == 2 * i
    assert batcher.stats.snapshot().batch_sizes == {8: 1}
    batcher.close()


def test_a_request_that_cannot_join_cuts_the_batch_ahead_of_it(counted) -> None:
    batcher = DynamicBatcher("mixed v1", doubled, ["y"], BatchingPolicy(max_batch_size=8, max_queue_delay_ms=HOUR_MS))
    with batcher._wakeup:
        narrow = [batcher.submit(one_row(i)) for i in range(3)]
    wide = batcher.submit(one_row(9, width=2))  # another shape: the three cannot wait for company
    assert counted.notified == 2
    assert [f.result(timeout=30)["y"][0, 0] for f in narrow] == [0, 2, 4]
    batcher.close()  # the wide one, alone at the head, runs when the batcher drains
    assert wide.result(timeout=30)["y"].shape == (1, 2)
    assert batcher.stats.snapshot().batch_sizes == {1: 1, 3: 1}


def test_event_loop_callers_get_their_rows_with_one_loop_wake_up_a_batch() -> None:
    batcher = DynamicBatcher("async v1", doubled, ["y"], BatchingPolicy(max_batch_size=16, max_queue_delay_ms=HOUR_MS))

    async def main() -> tuple[list[dict[str, np.ndarray]], int]:
        loop = asyncio.get_running_loop()
        calls = 0
        original = loop.call_soon_threadsafe

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        with batcher._wakeup:  # all queued before the batcher looks: two full batches
            waiters = [batcher.submit_async(one_row(i)) for i in range(32)]
        answers = await asyncio.gather(*waiters)
        return answers, calls

    answers, calls = asyncio.run(main())
    assert [a["y"][0, 0] for a in answers] == [2 * i for i in range(32)]
    stats = batcher.stats.snapshot()
    assert stats.batch_sizes == {16: 2}
    assert calls == stats.batches == 2  # not 32: one wake-up of the loop per batch
    batcher.close()


def test_a_cancelled_caller_is_skipped_and_the_others_answered() -> None:
    runs: list[int] = []

    def record(inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        runs.append(len(inputs["x"]))
        return doubled(inputs, names)

    batcher = DynamicBatcher("cancel v1", record, ["y"], BatchingPolicy(max_batch_size=4, max_queue_delay_ms=HOUR_MS))

    async def main() -> list[float]:
        with batcher._wakeup:
            waiters = [batcher.submit_async(one_row(i)) for i in range(3)]
        waiters[1].cancel()
        waiters.append(batcher.submit_async(one_row(3)))  # the fourth row: the batch is full
        done = await asyncio.gather(*waiters, return_exceptions=True)
        return [d["y"][0, 0] for d in done if isinstance(d, dict)]

    assert asyncio.run(main()) == [0, 4, 6]
    assert runs == [3]  # the cancelled one was not run
    batcher.close()


def test_an_output_that_is_the_staged_input_survives_the_next_batch() -> None:
    """A graph whose output is its input (ONNX Runtime may hand the input back): the answers of one
    batch are not overwritten when the next batch is assembled in the same buffer."""
    batcher = DynamicBatcher(
        "identity v1",
        lambda inputs, names: {"y": inputs["x"]},
        ["y"],
        BatchingPolicy(max_batch_size=4, max_queue_delay_ms=HOUR_MS),
    )
    with batcher._wakeup:
        first = [batcher.submit(one_row(i)) for i in range(4)]
    answers = [f.result(timeout=30) for f in first]
    with batcher._wakeup:
        second = [batcher.submit(one_row(100 + i)) for i in range(4)]
    [f.result(timeout=30) for f in second]
    assert [a["y"][0, 0] for a in answers] == [0, 1, 2, 3]
    batcher.close()


# -- the staging area ----------------------------------------------------------------------------


def parts(values: list[float], width: int = 3) -> list[dict[str, np.ndarray]]:
    return [{"x": np.full((1, width), v, np.float32), "m": np.full((1, 2), v, np.int64)} for v in values]


def test_staging_stacks_as_concatenate_does_and_reuses_its_buffers() -> None:
    area = StagingArea(max_rows=8)
    first = area.assemble(parts([1, 2, 3]))
    np.testing.assert_array_equal(first["x"], np.concatenate([p["x"] for p in parts([1, 2, 3])]))
    assert first["m"].dtype == np.int64 and first["m"].shape == (3, 2)
    address = first["x"].ctypes.data
    second = area.assemble(parts([4, 5]))
    assert second["x"].ctypes.data == address  # the same memory, its first rows
    np.testing.assert_array_equal(second["x"][:, 0], [4, 5])
    assert area.holds(second["x"][1:]) and not area.holds(np.zeros(3, np.float32))


def test_staging_grows_for_more_rows_and_keeps_a_bounded_number_of_buffers() -> None:
    area = StagingArea(max_rows=64)
    small = area.assemble(parts([1.0]))["x"]
    big = area.assemble(parts([float(i) for i in range(40)]))["x"]
    assert big.shape == (40, 3) and big.base is not None and big.base.shape[0] == 64
    assert not np.may_share_memory(small, big)
    for width in range(1, 20):  # inputs of many lengths: only the latest few buffers are kept
        area.assemble(parts([1.0], width=width))
    assert len(area._buffers) <= staging._KEPT


def test_a_pin_is_asked_once_per_new_buffer() -> None:
    pinned: list[int] = []
    area = StagingArea(max_rows=4, pin=lambda buffer: pinned.append(buffer.nbytes) or True)
    for _ in range(3):
        area.assemble(parts([1.0, 2.0]))
    assert len(pinned) == 2 and area.pinned == 2  # x and m, once each


class FakeCudaRuntime:
    """libcudart's two calls, as ctypes would expose them."""

    def __init__(self, status: int = 0) -> None:
        self.registered: dict[int, int] = {}
        self.unregistered: list[int] = []
        runtime = self

        class Call:
            argtypes: list[Any] = []

            def __init__(self, fn: Any) -> None:
                self.fn = fn

            def __call__(self, *args: Any) -> int:
                return int(self.fn(*args))

        self.cudaHostRegister = Call(lambda ptr, size, flags: runtime.registered.__setitem__(ptr, size) or status)
        self.cudaHostUnregister = Call(lambda ptr: runtime.unregistered.append(ptr) or 0)


def test_cuda_buffers_are_page_locked_and_unlocked_when_freed(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = FakeCudaRuntime()
    monkeypatch.setattr(staging, "_cuda_runtime", lambda: runtime)
    assert cuda_pin("cpu") is None  # a CPU model never asks the CUDA runtime
    area = StagingArea(max_rows=4, pin=cuda_pin("cuda"))
    stacked = area.assemble(parts([1.0, 2.0]))
    assert area.pinned == 2 and stacked["x"].base is not None
    assert runtime.registered[stacked["x"].base.ctypes.data] == stacked["x"].base.nbytes
    address = stacked["x"].base.ctypes.data
    del area, stacked
    gc.collect()
    assert address in runtime.unregistered


def test_without_a_cuda_runtime_or_when_it_refuses_the_buffers_stay_pageable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(staging, "_cuda_runtime", lambda: None)
    assert cuda_pin("cuda") is None
    assert "no CUDA runtime library" in caplog.text
    monkeypatch.setattr(staging, "_cuda_runtime", lambda: FakeCudaRuntime(status=2))
    area = StagingArea(max_rows=4, pin=cuda_pin("cuda"))
    np.testing.assert_array_equal(area.assemble(parts([3.0]))["x"], np.full((1, 3), 3.0))
    assert area.pinned == 0 and "cudaHostRegister refused" in caplog.text


def test_a_batcher_for_a_cuda_model_stages_in_pinned_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "_cuda_runtime", lambda: FakeCudaRuntime())
    batcher = DynamicBatcher("gpu v1", doubled, ["y"], BatchingPolicy(4, HOUR_MS), device=Device("cuda"))
    with batcher._wakeup:
        futures = [batcher.submit(one_row(i)) for i in range(4)]
    assert [f.result(timeout=30)["y"][0, 0] for f in futures] == [0, 2, 4, 6]
    assert batcher.staging.pinned == 1
    batcher.close()


def test_on_a_gpu_batches_run_through_pinned_buffers_and_io_binding(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Where onnxruntime offers CUDA and a GPU is usable: the real runtime page-locks, the answers match."""
    import onnxruntime as ort

    from medfn.serving.sessions import make_session, run_session, session_device
    from tests.onnx_builders import affine_model

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no CUDAExecutionProvider in this onnxruntime (the CPU wheel): the CUDA path needs a GPU machine")
    path = tmp_path / "model.onnx"
    path.write_bytes(affine_model(2.0))
    session = make_session(path, providers="CUDAExecutionProvider,CPUExecutionProvider")
    device = session_device(session)
    if device.kind != "cuda":
        pytest.skip("CUDAExecutionProvider is offered but no GPU is usable here")
    batcher = DynamicBatcher(
        "cuda v1",
        lambda inputs, names: dict(zip(names, run_session(session, names, inputs, device), strict=True)),
        ["y"],
        BatchingPolicy(4, HOUR_MS),
        device=device,
    )
    with batcher._wakeup:
        futures = [batcher.submit({"x": np.full((1, 4), i, np.float32)}) for i in range(4)]
    assert [float(f.result(timeout=60)["y"][0, 0]) for f in futures] == [1.0, 3.0, 5.0, 7.0]
    assert batcher.staging.pinned == 1
    batcher.close()
