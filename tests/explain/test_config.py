"""`[explain]` in model.toml held against the graph at load, as every other declaration is."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medfn.function import check_models, load_models
from medfn.serving import LocalStore
from tests.conftest import REPO

SHIPPED = 'output = "saliency"'


def edited(tmp_path: Path, new: str) -> LocalStore:
    shutil.copytree(REPO / "model_store" / "scan_classifier", tmp_path / "scan_classifier")
    toml = tmp_path / "scan_classifier" / "model.toml"
    text = toml.read_text()
    assert SHIPPED in text
    toml.write_text(text.replace(SHIPPED, new, 1))
    return LocalStore(tmp_path)


def test_the_shipped_saliency_output_passes_the_checks() -> None:
    assert check_models(REPO / "model_store", ["scan_classifier"]) == []


@pytest.mark.parametrize(
    ("new", "reason"),
    [
        ('output = "cams"', "[explain] output 'cams' is not a declared output"),
        ('output = "probabilities"', "[explain] output 'probabilities' must be class maps"),
        ("occlusion_grid = 9", "occlusion_grid must be a whole number from 1 to 8"),
        ('output = "saliency"\noverlay_max_side = 8', "overlay_max_side must be a whole number of pixels"),
    ],
)
def test_a_wrong_explain_table_makes_the_model_not_ready(tmp_path: Path, new: str, reason: str) -> None:
    (model,) = load_models(edited(tmp_path, new), "scan_classifier")
    assert not model.ready and reason in model.reason, model.reason
