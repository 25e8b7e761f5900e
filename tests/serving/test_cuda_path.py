"""The CUDA path on a CPU-only machine: provider choice, the fallback's log line, I/O binding."""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest

from medfn.function import load_models
from medfn.serving import sessions
from medfn.serving.sessions import CPU, Device, make_session, run_bound, run_session, session_device
from tests.onnx_builders import affine_model

CUDA_FIRST = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture
def affine_path(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(affine_model(2.0))
    return path


def test_cuda_requested_but_absent_from_onnxruntime_falls_back_with_a_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sessions.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setenv("MEDFN_PROVIDERS", ",".join(CUDA_FIRST))
    with caplog.at_level(logging.WARNING, logger="medfn.serving.sessions"):
        assert sessions.choose_providers() == ["CPUExecutionProvider"]
    assert "CUDA was requested but this onnxruntime has no CUDAExecutionProvider" in caplog.text
    assert "falling back to CPU" in caplog.text


def test_cuda_offered_but_unusable_runs_on_cpu_with_a_log_line(
    affine_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """onnxruntime-gpu on a machine without a GPU: CUDA is listed, the session lands on CPU."""
    monkeypatch.setattr(sessions.ort, "get_available_providers", lambda: CUDA_FIRST)
    monkeypatch.delenv("MEDFN_PROVIDERS", raising=False)
    assert sessions.choose_providers() == CUDA_FIRST
    with caplog.at_level(logging.WARNING, logger="medfn.serving.sessions"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ORT's own "not in available provider names"
        session = make_session(affine_path, threads=1)
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert session_device(session) == CPU
    assert "CUDA was requested but is not usable here" in caplog.text and "running model.onnx on CPU" in caplog.text


def test_require_cuda_makes_the_model_not_ready_instead(affine_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDFN_REQUIRE_CUDA", "1")
    with pytest.raises(RuntimeError, match="MEDFN_REQUIRE_CUDA=1 but model.onnx runs on CPUExecutionProvider"):
        make_session(affine_path, threads=1)


def test_io_binding_gives_what_session_run_gives(affine_path: Path) -> None:
    """The bound path, on the CPU device here: one OrtValue per input, outputs fetched once."""
    session = make_session(affine_path, threads=1)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::-1]  # not contiguous: the binding copies
    (bound,) = run_bound(session, ["y"], {"x": x}, CPU)
    np.testing.assert_array_equal(bound, session.run(["y"], {"x": x})[0])
    np.testing.assert_array_equal(bound, x * 2 + 1)


def test_a_cuda_session_runs_through_io_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Device] = []
    monkeypatch.setattr(sessions, "run_bound", lambda session, names, inputs, device: calls.append(device) or ["y"])

    class FakeCudaSession:
        def get_providers(self) -> list[str]:
            return CUDA_FIRST

        def get_provider_options(self) -> dict[str, dict[str, str]]:
            return {"CUDAExecutionProvider": {"device_id": "1"}, "CPUExecutionProvider": {}}

    device = session_device(FakeCudaSession())  # type: ignore[arg-type]
    assert device == Device("cuda", 1) and device.label == "cuda:1"
    assert run_session(FakeCudaSession(), ["y"], {}, device) == ["y"]  # type: ignore[arg-type]
    assert calls == [device]


def test_served_model_reports_provider_and_device(affine_client) -> None:  # type: ignore[no-untyped-def]
    parameters = affine_client.get("/v2/models/affine").json()["parameters"]
    assert parameters["provider"] == "CPUExecutionProvider" and parameters["device"] == "cpu"


def test_fp16_build_keeps_fp32_io_and_serves_as_a_new_version(tmp_path: Path) -> None:
    from medfn.serving.plane import InferencePlane
    from medfn.serving.store import LocalStore
    from model_store.build.convert_fp16 import max_difference, register_version, to_fp16
    from tests.onnx_builders import write_model_folder

    folder = write_model_folder(
        tmp_path, "affine", {1: affine_model(2.0)}, extra_toml='[version_policy]\npolicy = "all"\n'
    )
    target = folder / "2" / "model.onnx"
    to_fp16(folder / "1" / "model.onnx", target)
    difference = max_difference(folder / "1" / "model.onnx", target)
    assert difference is not None and difference < 1e-2
    register_version(folder / "model.toml", 2, hashlib.sha256(target.read_bytes()).hexdigest())

    plane = InferencePlane()
    plane.add("affine", load_models(LocalStore(tmp_path), "affine"))
    half = plane.get("affine", 2)
    assert half.ready, half.reason
    x = np.asarray([[0.5, 1.0, -2.0, 3.25]], dtype=np.float32)  # exact in fp16
    y = half.run({"x": x})["y"]
    assert y.dtype == np.float32  # keep_io_types: FP32 in, FP32 out
    np.testing.assert_array_equal(y, x * 2 + 1)
