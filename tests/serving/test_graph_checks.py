"""model.toml held against its graph at load: each mistake makes the model not ready with the reason,
the HTTP routes say so (503), and `medfn check` lists it. Every case edits one line of a reference model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medfn.function import check_models, load_models
from medfn.http import create_app
from medfn.serving import InferencePlane, LocalStore
from medfn.serving.store import sha256_of
from tests.conftest import REPO

# (model, the line as shipped, the mistaken line, what the reason must say)
MISTAKES = [
    ("breast_mass", 'name = "features"', 'name = "feats"', "input 'feats' is not in the graph"),
    ("breast_mass", 'name = "probabilities"', 'name = "probs"', "output 'probs' is not in the graph"),
    ("breast_mass", 'datatype = "FP32"\nshape = [-1, 30]', 'datatype = "FP64"\nshape = [-1, 30]', "FP32 in the graph"),
    ("breast_mass", "shape = [-1, 30]", "shape = [-1, 30, 1]", "has rank 2 in the graph, 3 in model.toml"),
    ("breast_mass", "shape = [-1, 30]", "shape = [-1, 31]", "dim 1 is 30 in the graph, 31 in model.toml"),
    ("breast_mass", '    "mean radius",\n', "", "names 29 features; input 'features' has 30 columns"),
    ("breast_mass", 'labels = ["benign", "malignant"]', 'labels = ["benign", "malignant", "other"]', "has 3 labels"),
    ("breast_mass", 'positive_label = "malignant"', 'positive_label = "cancer"', "positive_label 'cancer'"),
    ("scan_classifier", "size = [128, 128]", "size = [64, 64]", "size has height 64; input 'image' takes 128"),
    ("scan_classifier", 'color = "L"', 'color = "RGB"', "color RGB has 3 channels; input 'image' takes 1"),
    ("scan_classifier", 'labels = ["clear", "opacity"]', 'labels = ["clear"]', "has 1 labels; output"),
    ("vitals_risk", '"temperature", "consciousness"]', '"temperature"]', "names 5 features"),
]  # fmt: skip


def copied_store(tmp_path: Path, model: str) -> LocalStore:
    shutil.copytree(REPO / "model_store" / model, tmp_path / model)
    return LocalStore(tmp_path)


def mistaken_store(tmp_path: Path, model: str, shipped: str, mistaken: str) -> LocalStore:
    store = copied_store(tmp_path, model)
    toml = tmp_path / model / "model.toml"
    text = toml.read_text()
    assert shipped in text, f"{model}/model.toml no longer has {shipped!r}"
    toml.write_text(text.replace(shipped, mistaken, 1))
    return store


@pytest.mark.parametrize(("model", "shipped", "mistaken", "reason"), MISTAKES)
def test_a_mistake_makes_the_model_not_ready_with_the_reason(
    tmp_path: Path, model: str, shipped: str, mistaken: str, reason: str
) -> None:
    (loaded,) = load_models(mistaken_store(tmp_path, model, shipped, mistaken), model)
    assert not loaded.ready
    assert reason in loaded.reason, loaded.reason
    assert any(reason in line for line in check_models(tmp_path, [model]))


def test_a_vocabulary_larger_than_the_embedding_is_found(tmp_path: Path) -> None:
    store = copied_store(tmp_path, "notes_classifier")
    vocab_path = tmp_path / "notes_classifier" / "1" / "vocab.json"
    vocab = json.loads(vocab_path.read_text())
    vocab["zzzunseen"] = 10**6
    vocab_path.write_text(json.dumps(vocab))
    toml = tmp_path / "notes_classifier" / "model.toml"
    old = sha256_of(REPO / "model_store" / "notes_classifier" / "1" / "vocab.json")
    toml.write_text(toml.read_text().replace(old, sha256_of(vocab_path)))
    (loaded,) = load_models(store, "notes_classifier")
    assert not loaded.ready and "vocabulary is larger than the embedding" in loaded.reason


def test_the_routes_say_not_ready_with_the_reason(tmp_path: Path) -> None:
    plane = InferencePlane()
    store = mistaken_store(tmp_path, "breast_mass", 'name = "features"', 'name = "feats"')
    plane.add("breast_mass", load_models(store, "breast_mass"))
    client = TestClient(create_app(plane, metrics_route=False))
    (row,) = client.get("/v1/models").json()["models"]
    assert row["ready"] is False and "input 'feats' is not in the graph" in row["reason"]
    assert client.get("/v2/health/ready").status_code == 503
    answer = client.post("/v1/models/breast_mass/predict", json={"mean radius": 1.0})
    assert answer.status_code == 503 and "feats" in answer.json()["error"]


def test_every_shipped_model_passes() -> None:
    assert check_models(REPO / "model_store") == []


def test_medfn_check_prints_each_problem_and_fails(tmp_path: Path) -> None:
    mistaken_store(tmp_path, "breast_mass", 'positive_label = "malignant"', 'positive_label = "cancer"')
    done = subprocess.run(
        [sys.executable, "-m", "medfn.cli", "check", "--store", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stdout.strip() == "breast_mass v1: [postprocessing] positive_label 'cancer' is not one of the labels"
