"""A medical API may refuse but never answers nonsense: values that do not fit a model's input,
malformed bodies and oversized batches are 4xx naming the problem; a non-finite output is never a 200."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer

from medfn.function import load_models
from medfn.http import create_app
from medfn.serving import InferencePlane, LocalStore
from tests.onnx_builders import affine_model, write_model_folder

FEATURES = [str(name) for name in load_breast_cancer().feature_names]


def record(**changes: float) -> dict[str, float]:
    row = dict(zip(FEATURES, load_breast_cancer().data[0].tolist(), strict=True))
    return {**row, **changes}


def infer_body(name: str, datatype: str, shape: list[int], data: list) -> dict:  # type: ignore[type-arg]
    return {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]}


@pytest.mark.parametrize("value", [1e39, 3.5e38, -1e39])
def test_a_feature_beyond_fp32_is_refused_by_name(gateway_client: TestClient, value: float) -> None:
    for body in (record(**{"mean radius": value}), {"records": [record(), record(**{"mean radius": value})]}):
        answer = gateway_client.post("/v1/models/breast_mass/predict", json=body)
        assert answer.status_code == 422, answer.text
        assert "mean radius" in answer.json()["error"] and "FP32" in answer.json()["error"]


@pytest.mark.parametrize("value", [1e39, -1e39])
def test_a_tensor_value_beyond_fp32_is_refused_on_v2(gateway_client: TestClient, value: float) -> None:
    data = [*load_breast_cancer().data[0].tolist()[:29], value]
    answer = gateway_client.post("/v2/models/breast_mass/infer", json=infer_body("features", "FP32", [1, 30], data))
    assert answer.status_code == 400, answer.text
    assert "'features'" in answer.json()["error"] and "finite FP32" in answer.json()["error"]


def test_binary_nan_is_refused_on_v2(gateway_client: TestClient) -> None:
    values = np.full((1, 30), np.nan, dtype=np.float32).tobytes()
    head = json.dumps(
        {
            "inputs": [
                {"name": "features", "datatype": "FP32", "shape": [1, 30], "parameters": {"binary_data_size": 120}}
            ]
        }
    ).encode()
    answer = gateway_client.post(
        "/v2/models/breast_mass/infer",
        content=head + values,
        headers={"inference-header-content-length": str(len(head)), "content-type": "application/octet-stream"},
    )
    assert answer.status_code == 400 and "finite" in answer.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs":[{"a\\u0000":1,"name":"features","datatype":"FP32","shape":[1,30],"data":[0]}]}',
        b'{"a\\u0000":1,"inputs":[]}',
    ],
)
def test_a_nul_in_a_json_key_is_a_400(gateway_client: TestClient, body: bytes) -> None:
    answer = gateway_client.post(
        "/v2/models/breast_mass/infer", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400 and "NUL" in answer.json()["error"]


def test_more_rows_than_max_batch_size_is_a_400(gateway_client: TestClient) -> None:
    data = np.tile(load_breast_cancer().data[0], (65, 1)).ravel().tolist()  # max_batch_size = 64
    answer = gateway_client.post("/v2/models/breast_mass/infer", json=infer_body("features", "FP32", [65, 30], data))
    assert answer.status_code == 400 and "at most 64" in answer.json()["error"]


@pytest.mark.parametrize("ids", [[-1, 5, 7], [5, 10**6]])
def test_token_ids_outside_the_vocabulary_are_a_400(gateway_client: TestClient, ids: list[int]) -> None:
    answer = gateway_client.post(
        "/v2/models/notes_classifier/infer", json=infer_body("tokens", "INT64", [1, len(ids)], ids)
    )
    assert answer.status_code == 400 and "token ids" in answer.json()["error"]


def test_a_non_finite_output_is_never_a_200(tmp_path: Path) -> None:
    write_model_folder(tmp_path, "blowup", {1: affine_model(scale=float("inf"))})
    plane = InferencePlane()
    plane.add("blowup", load_models(LocalStore(tmp_path), "blowup"))
    client = TestClient(create_app(plane, metrics_route=False))
    answer = client.post("/v2/models/blowup/infer", json=infer_body("x", "FP32", [1, 4], [0.0, 1.0, -1.0, 2.0]))
    assert answer.status_code == 422 and "non-finite" in answer.json()["error"]
    assert client.get("/v2/health/live").status_code == 200
