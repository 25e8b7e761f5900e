"""A deployed function serves only the model version whose sha256 the deployment pinned: a store
whose model.toml and model.onnx were both replaced is refused (not ready, 503)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medfn.function import deployed_pin, load_models
from medfn.serving import LocalStore
from tests.conftest import REPO
from tests.onnx_builders import affine_model, write_model_folder


def test_the_pinned_version_loads_and_a_replaced_one_does_not(tmp_path: Path) -> None:
    store_dir = write_model_folder(tmp_path, "m", {1: affine_model(2.0)}).parent
    pin = LocalStore(store_dir).read_config("m").sha256[1]["model.onnx"]
    (model,) = load_models(LocalStore(store_dir), "m", pinned=(1, pin))
    assert model.ready
    write_model_folder(tmp_path, "m", {1: affine_model(5.0)})  # both files replaced, consistently
    (replaced,) = load_models(LocalStore(store_dir), "m", pinned=(1, pin))
    assert not replaced.ready and "not the one pinned at deploy" in replaced.reason
    (other,) = load_models(LocalStore(store_dir), "m", pinned=(2, pin))
    assert not other.ready and "not the version pinned at deploy (2)" in other.reason


def test_the_pin_comes_from_the_function_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert deployed_pin() is None
    monkeypatch.setenv("MEDFN_MODEL_VERSION", "1")
    monkeypatch.setenv("MEDFN_MODEL_SHA256", "0" * 64)
    assert deployed_pin() == (1, "0" * 64)
    from medfn.function import load_function

    function = load_function(REPO / "functions" / "breast_mass")
    (entry,) = function.plane.entries()
    assert not entry.ready and "pinned at deploy" in entry.reason
