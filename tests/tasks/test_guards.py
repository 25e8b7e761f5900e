"""Inputs outside a model's world, through the routes: refused (422) or answered with a warning,
as `[guards]` in each model.toml says (written by the training scripts from the training data)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer

from medfn.function import load_models
from medfn.http import create_app
from medfn.serving import InferencePlane, LocalStore
from model_store.build import chest_phantoms, ct_phantoms, vitals_series
from tests.conftest import REPO

FEATURES = [str(name) for name in load_breast_cancer().feature_names]


def record(**changes: float) -> dict[str, float]:
    return {**dict(zip(FEATURES, load_breast_cancer().data[0].tolist(), strict=True)), **changes}


def test_a_ct_slice_is_refused_by_the_radiograph_classifier(gateway_client: TestClient) -> None:
    hu, _ = ct_phantoms.generate(1, seed=41)
    answer = gateway_client.post(
        "/v1/models/scan_classifier/predict",
        content=ct_phantoms.to_dicom(hu[0]),
        headers={"content-type": "application/dicom"},
    )
    assert answer.status_code == 422
    assert answer.json()["error"] == "DICOM modality CT; this model reads CR, DX"


def test_a_radiograph_passes_the_modality_guard(gateway_client: TestClient) -> None:
    images, _ = chest_phantoms.generate(1, seed=42)
    answer = gateway_client.post(
        "/v1/models/scan_classifier/predict",
        content=chest_phantoms.to_dicom(images[0]),
        headers={"content-type": "application/dicom"},
    )
    assert answer.status_code == 200 and answer.json()["warnings"] == []


def test_a_note_of_unknown_words_is_answered_with_a_warning(gateway_client: TestClient) -> None:
    answer = gateway_client.post(
        "/v1/models/notes_classifier/predict", content=b"qwzx plmk vbnt", headers={"content-type": "text/plain"}
    )
    assert answer.status_code == 200
    assert answer.json()["warnings"] == [
        "only 0 of 3 words are in this model's vocabulary (its training notes had 95%+)"
    ]


def test_a_value_outside_the_training_range_is_answered_with_a_warning(gateway_client: TestClient) -> None:
    answer = gateway_client.post("/v1/models/breast_mass/predict", json=record(**{"mean radius": -5.0}))
    assert answer.status_code == 200
    assert answer.json()["warnings"] == ["feature 'mean radius' = -5 lies outside the training range 6.98 to 28.12"]
    usual = gateway_client.post("/v1/models/breast_mass/predict", json=record())
    assert usual.status_code == 200 and usual.json()["warnings"] == []


def test_a_vital_sign_outside_the_training_range_is_answered_with_a_warning(gateway_client: TestClient) -> None:
    series, _ = vitals_series.generate(1, seed=43)
    observations = [dict(zip(vitals_series.FEATURES, map(float, row), strict=True)) for row in series[0]]
    observations[-1]["heart_rate"] = 245.0  # plausible (under 250), beyond every training series
    answer = gateway_client.post("/v1/models/vitals_risk/predict", json={"observations": observations})
    assert answer.status_code == 200
    (warning,) = answer.json()["warnings"]
    assert warning.startswith(f"observation {len(observations) - 1}: 'heart_rate' = 245 lies outside")


def served(tmp_path: Path, model: str, edit: tuple[str, str]) -> TestClient:
    shutil.copytree(REPO / "model_store" / model, tmp_path / model)
    toml = tmp_path / model / "model.toml"
    assert edit[0] in toml.read_text()
    toml.write_text(toml.read_text().replace(*edit))
    plane = InferencePlane()
    plane.add(model, load_models(LocalStore(tmp_path), model))
    return TestClient(create_app(plane, metrics_route=False))


def test_policy_reject_refuses_with_the_reason(tmp_path: Path) -> None:
    client = served(tmp_path, "breast_mass", ('policy = "warn"', 'policy = "reject"'))
    refused = client.post("/v1/models/breast_mass/predict", json=record(**{"mean radius": -5.0}))
    assert refused.status_code == 422 and "'mean radius' = -5 lies outside" in refused.json()["error"]


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (('policy = "warn"', 'policy = "block"'), "policy must be one of reject, warn"),
        (('"mean radius" = [', '"mean radios" = ['), "names 'mean radios', which is not a feature"),
    ],
)
def test_a_guard_that_cannot_work_is_a_load_problem(tmp_path: Path, edit: tuple[str, str], reason: str) -> None:
    client = served(tmp_path, "breast_mass", edit)
    (row,) = client.get("/v1/models").json()["models"]
    assert row["ready"] is False and reason in row["reason"]


def test_warnings_are_listed_at_most_ten_at_a_time(gateway_client: TestClient) -> None:
    far = record(**{name: -1.0 for name in FEATURES})
    warnings = gateway_client.post("/v1/models/breast_mass/predict", json=far).json()["warnings"]
    assert len(warnings) == 11 and warnings[-1] == "(and 20 more values outside)"
    assert np.all([w.startswith("feature '") for w in warnings[:10]])
