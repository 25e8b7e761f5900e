"""model.toml settings are declared (medfn.tasks.options): an unknown key or value is a load
problem, never silently ignored, and model_store/README.md's reference is generated from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from medfn.function import check_models, load_models
from medfn.serving import LocalStore
from medfn.tasks.options import reference
from tests.conftest import REPO
from tests.serving.test_graph_checks import mistaken_store


def edited(tmp_path: Path, model: str, old: str, new: str) -> Path:
    """A copy of a reference model with one line of its model.toml changed: the store's folder."""
    mistaken_store(tmp_path, model, old, new)
    return tmp_path


@pytest.mark.parametrize(
    ("model", "old", "new", "reason"),
    [
        ("scan_classifier", 'color = "L"', 'color = "L"\nlayoutt = "NHWC"', "[preprocessing] layoutt is not a"),
        ("scan_classifier", 'color = "L"', 'color = "L"\nlayout = "CHWN"', "[preprocessing] layout = 'CHWN'"),
        ("scan_classifier", 'color = "L"', 'color = "L"\nresize = "lanczos"', "one of area, nearest"),
        ("breast_mass", 'positive_label = "malignant"', "softmax = true", "[postprocessing] softmax is not a"),
        ("scan_segmenter", 'color = "L"', 'color = "L"\naspect = "pad"', 'aspect must be "stretch"'),
        (
            "scan_classifier",
            'color = "L"',
            'color = "L"\nlayout = "NHWC"',
            "color L has 1 channels; input 'image' takes 128",
        ),
    ],
)
def test_a_wrong_setting_is_a_load_problem(tmp_path: Path, model: str, old: str, new: str, reason: str) -> None:
    (loaded,) = load_models(LocalStore(edited(tmp_path, model, old, new)), model)
    assert not loaded.ready and reason in loaded.reason, loaded.reason


def test_an_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    store = edited(tmp_path, "breast_mass", "max_batch_size = 64", "max_batch_size = 64\nmax_batch = 8")
    (problem,) = check_models(store, ["breast_mass"])
    assert "'max_batch' is not a setting" in problem


def test_the_readme_reference_is_generated_from_the_declarations() -> None:
    text = (REPO / "model_store" / "README.md").read_text()
    section = text.split("<!-- settings reference: begin -->\n", 1)[1].split("<!-- settings reference: end -->")[0]
    assert section == reference(), "regenerate it: python -m medfn.tasks.options model_store/README.md"
