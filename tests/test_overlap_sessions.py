"""OverlapSessions: a call alone gets every core; calls that overlap get a one-thread session."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from medfn import runtime
from medfn.errors import BadRequest
from medfn.plane import InferencePlane
from medfn.runtime import make_session, overlap_sessions
from medfn.store import LocalStore
from tests.onnx_builders import affine_model


@pytest.fixture
def affine_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDFN_THREADS", "2")  # as on a 2-core machine, wherever the tests run
    path = tmp_path / "model.onnx"
    path.write_bytes(affine_model(2.0))
    return path


def _threads(session: object) -> int:
    return session.get_session_options().intra_op_num_threads  # type: ignore[attr-defined]


def test_a_lone_call_runs_wide_and_an_overlapping_one_narrow(affine_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[bool] = []
    monkeypatch.setattr(runtime, "return_freed_memory", lambda: trims.append(True))
    main = make_session(affine_path)
    overlap = overlap_sessions(main, affine_path)
    assert overlap is not None and _threads(main) == 2

    first = overlap.acquire()
    second = overlap.acquire()  # starts while the first is running
    assert first is main
    assert second is not main and _threads(second) == 1
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert np.array_equal(second.run(None, {"x": x})[0], first.run(None, {"x": x})[0])
    overlap.release()
    third = overlap.acquire()  # the first is still running: the same one-thread session, made once
    assert third is second
    assert trims == [True]  # what building it freed went back to the OS, once
    overlap.release()
    overlap.release()
    assert overlap.acquire() is main  # alone again


def test_one_thread_and_gpu_sessions_need_no_second_session(affine_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDFN_THREADS", "1")
    assert overlap_sessions(make_session(affine_path), affine_path) is None
    monkeypatch.setenv("MEDFN_THREADS", "2")
    monkeypatch.setattr(runtime, "session_device", lambda session: runtime.Device("cuda", 0))
    assert overlap_sessions(make_session(affine_path), affine_path) is None


def test_when_no_second_session_can_be_made_overlapping_calls_share_the_main_one(
    affine_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    main = make_session(affine_path)
    overlap = overlap_sessions(main, affine_path)
    assert overlap is not None

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError("no room for a second copy of the weights")

    monkeypatch.setattr(runtime, "make_session", out_of_memory)
    with caplog.at_level(logging.ERROR, logger="medfn.runtime"):
        assert overlap.acquire() is main
        assert overlap.acquire() is main
    assert caplog.text.count("no one-thread session for model.onnx") == 1  # tried once, not per call


def test_a_failed_run_still_ends_its_call(affine_store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Model.execute releases in `finally`: a refused input must not leave the count up, or
    every later lone call would run narrow."""
    monkeypatch.setenv("MEDFN_THREADS", "2")
    (model,) = InferencePlane().add(affine_store, "affine")[-1:]
    assert model.overlap is not None
    with pytest.raises(BadRequest):
        model.execute({"x": np.zeros((1, 5), dtype=np.float32)}, ["y"])  # the graph takes width 4
    assert model.overlap.acquire() is model.session
