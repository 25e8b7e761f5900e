"""The README's versioning walk-through, as written: what each policy serves, and what is asked in vain."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medfn.function import load_models
from medfn.http import create_app
from medfn.serving import InferencePlane, LocalStore
from tests.onnx_builders import affine_model, write_model_folder

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 1.0, 1.0, 1.0]}]}


def client_for(tmp_path: Path, policy: str) -> TestClient:
    write_model_folder(tmp_path, "m", {1: affine_model(2.0), 2: affine_model(3.0)}, extra_toml=policy)
    plane = InferencePlane()
    plane.add("m", load_models(LocalStore(tmp_path), "m"))
    return TestClient(create_app(plane, metrics_route=False))


def answer(client: TestClient, path: str) -> float:
    response = client.post(path, json=BODY)
    assert response.status_code == 200, response.text
    return float(response.json()["outputs"][0]["data"][0])


def test_the_default_policy_serves_the_latest_and_names_itself_when_asked_for_another(tmp_path: Path) -> None:
    client = client_for(tmp_path, "")
    assert answer(client, "/v2/models/m/infer") == 4.0  # y = 3x + 1: version 2
    assert answer(client, "/v2/models/m/versions/2/infer") == 4.0
    refused = client.post("/v2/models/m/versions/1/infer", json=BODY)
    assert refused.status_code == 404
    assert "served: [2]" in refused.json()["error"] and "version_policy 'latest'" in refused.json()["error"]


@pytest.mark.parametrize(
    "policy",
    [
        '[version_policy]\npolicy = "all"\n',
        '[version_policy]\npolicy = "latest"\nlatest_n = 2\n',
        '[version_policy]\npolicy = "specific"\nversions = [1, 2]\n',
    ],
)
def test_serving_several_versions(tmp_path: Path, policy: str) -> None:
    client = client_for(tmp_path, policy)
    assert answer(client, "/v2/models/m/versions/1/infer") == 3.0  # y = 2x + 1
    assert answer(client, "/v2/models/m/versions/2/infer") == 4.0
    assert answer(client, "/v2/models/m/infer") == 4.0  # the latest served
