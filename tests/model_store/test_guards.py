"""The guards each model.toml carries are what its training data gives (model_store/build/guards.py)."""

from __future__ import annotations

import pytest

from model_store.build import guards, model_toml
from tests.conftest import REPO


@pytest.mark.parametrize("model", sorted(guards.GUARDS))
def test_model_toml_carries_the_guards_its_training_data_gives(model: str) -> None:
    text = (REPO / "model_store" / model / "model.toml").read_text()
    assert text.endswith("\n\n" + model_toml.render(guards.GUARDS[model]()))
