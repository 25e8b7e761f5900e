"""OverlapSessions: a call alone gets every core; calls that overlap get a one-thread session."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from medfn.errors import BadRequest
from medfn.function import load_models
from medfn.serving import sessions
from medfn.serving.plane import InferencePlane
from medfn.serving.sessions import OverlapSessions, make_session, overlap_sessions
from medfn.serving.store import LocalStore
from tests.onnx_builders import affine_model


@pytest.fixture
def affine_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDFN_THREADS", "2")  # as on a 2-core machine, wherever the tests run
    path = tmp_path / "model.onnx"
    path.write_bytes(affine_model(2.0))
    return path


def _threads(session: object) -> int:
    return session.get_session_options().intra_op_num_threads  # type: ignore[attr-defined]


def _one_thread(path: Path):  # type: ignore[no-untyped-def]
    return lambda: make_session(path, threads=1)


def test_on_two_cores_a_lone_call_runs_wide_and_an_overlapping_one_narrow(
    affine_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trims: list[bool] = []
    monkeypatch.setattr(sessions, "return_freed_memory", lambda: trims.append(True))
    main = make_session(affine_path)
    overlap = overlap_sessions(main, _one_thread(affine_path))
    assert overlap is not None and _threads(main) == 2

    first, first_main = overlap.acquire()
    second, second_main = overlap.acquire()  # starts while the first is running
    assert (first, first_main, second_main) == (main, True, False)
    assert _threads(second) == 1
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert np.array_equal(second.run(None, {"x": x})[0], first.run(None, {"x": x})[0])
    overlap.release(first_main)
    third, third_main = overlap.acquire()  # the second still runs: two cores, one taken
    assert (third, third_main) == (second, False)  # the same one-thread session, made once
    assert trims == [True]  # what building it freed went back to the OS, once
    overlap.release(second_main)
    overlap.release(third_main)
    assert overlap.acquire() == (main, True)  # alone again


def test_on_many_cores_the_main_session_goes_to_the_next_call_once_it_is_free(affine_path: Path) -> None:
    overlap = OverlapSessions(make_session(affine_path), _one_thread(affine_path), threads=16)
    a, a_main = overlap.acquire()
    b, b_main = overlap.acquire()
    assert (a_main, b_main) == (True, False)
    overlap.release(a_main)
    c, c_main = overlap.acquire()  # b still runs on one core of 16: main is free, so c takes it
    assert (c, c_main) == (overlap.main, True)


def test_one_thread_and_gpu_sessions_need_no_second_session(affine_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDFN_THREADS", "1")
    assert overlap_sessions(make_session(affine_path), _one_thread(affine_path)) is None
    monkeypatch.setenv("MEDFN_THREADS", "2")
    monkeypatch.setattr(sessions, "session_device", lambda session: sessions.Device("cuda", 0))
    assert overlap_sessions(make_session(affine_path), _one_thread(affine_path)) is None


def test_when_no_second_session_can_be_made_overlapping_calls_share_the_main_one(
    affine_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    main = make_session(affine_path)

    def out_of_memory() -> None:
        raise MemoryError("no room for a second copy of the weights")

    overlap = overlap_sessions(main, out_of_memory)  # type: ignore[arg-type]
    assert overlap is not None
    with caplog.at_level(logging.ERROR, logger="medfn.serving.sessions"):
        assert overlap.acquire() == (main, True)
        assert overlap.acquire() == (main, False)
        assert overlap.acquire() == (main, False)
    assert caplog.text.count("no one-thread session") == 1  # tried once, not per call


def test_a_failed_run_still_ends_its_call(affine_store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Model.execute releases in `finally`: a refused input must not leave the main session
    marked busy, or every later lone call would run narrow."""
    monkeypatch.setenv("MEDFN_THREADS", "2")
    (model,) = InferencePlane().add("affine", load_models(affine_store, "affine"))[-1:]
    assert model.overlap is not None
    with pytest.raises(BadRequest):
        model.execute({"x": np.zeros((1, 5), dtype=np.float32)}, ["y"])  # the graph takes width 4
    assert model.overlap.acquire() == (model.session, True)


def test_the_late_one_thread_session_refuses_a_model_file_changed_since_the_load(
    affine_store: LocalStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import shutil

    from medfn.serving.store import ArtifactError

    monkeypatch.setenv("MEDFN_THREADS", "2")
    store = LocalStore(tmp_path / "store")
    shutil.copytree(affine_store.root, store.root)
    (model,) = InferencePlane().add("affine", load_models(store, "affine"))[-1:]
    (store.root / "affine" / str(model.version) / "model.onnx").write_bytes(affine_model(9.0))
    with pytest.raises(ArtifactError, match="sha256"):
        model._one_thread_session()  # noqa: SLF001
