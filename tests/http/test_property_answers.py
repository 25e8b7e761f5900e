"""Property tests through every route: whatever a client sends, the answer is a 4xx with
`{"error"}`, or a 200 whose every number is finite and whose probabilities sum to 1.

Hypothesis draws the requests with a fixed seed and a bounded count per route, in process
(the gateway app, as `medfn serve` builds it), so a failure replays exactly.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from PIL import Image

from model_store.build import vitals_series
from tests.http.test_refusals import FEATURES

SEED = 20_261_207
EXAMPLES = settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e3, max_value=1e3),
    st.integers(min_value=-(2**70), max_value=2**70),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def assert_sane(response: Any) -> dict[str, Any] | None:
    """A 4xx with an error message, or a 200 that is finite; the 200's JSON is returned."""
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert isinstance(response.json()["error"], str)
        return None
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    assert _all_finite(body), body
    return dict(body)


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    return True


def assert_probabilities(probabilities: list[float]) -> None:
    assert all(0.0 <= p <= 1.0 for p in probabilities) and math.isclose(sum(probabilities), 1.0, abs_tol=1e-4)


def assert_one_shape(body: dict[str, Any]) -> None:
    """Every task's answer: the same keys, a version as a string, the model card's notice."""
    assert {"model", "model_version", "request_id", "label", "probabilities", "warnings", "notice"} <= set(body)
    assert isinstance(body["model_version"], str) and isinstance(body["warnings"], list)
    assert body["notice"] == "demonstration model, not for clinical use"
    if body["probabilities"]:
        assert_probabilities(list(body["probabilities"].values()))


def post_json(client: TestClient, path: str, document: Any) -> Any:
    body = json.dumps(document, allow_nan=True).encode()  # NaN and Infinity as Python clients send them
    return client.post(path, content=body, headers={"content-type": "application/json"})


@seed(SEED)
@EXAMPLES
@given(values=st.lists(numbers, min_size=30, max_size=30), batch=st.booleans())
def test_breast_mass_task_route(gateway_client: TestClient, values: list[Any], batch: bool) -> None:
    record = dict(zip(FEATURES, values, strict=True))
    body = assert_sane(
        post_json(gateway_client, "/v1/models/breast_mass/predict", {"records": [record]} if batch else record)
    )
    if body is not None:
        assert_one_shape(body)
        row = body["records"]["predictions"][0] if batch else body
        assert_probabilities(list(row["probabilities"].values()))


@seed(SEED)
@EXAMPLES
@given(values=st.lists(numbers, min_size=1, max_size=64), binary=st.booleans())
def test_breast_mass_infer_route(gateway_client: TestClient, values: list[Any], binary: bool) -> None:
    rows = max(1, len(values) // 30)
    data = (values * 30)[: rows * 30]
    if binary:
        with np.errstate(over="ignore", invalid="ignore"):
            raw = np.asarray([float(v) for v in data], dtype=np.float64).astype(np.float32).tobytes()
        head = {
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP32",
                    "shape": [rows, 30],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
        encoded = json.dumps(head).encode()
        response = gateway_client.post(
            "/v2/models/breast_mass/infer",
            content=encoded + raw,
            headers={"inference-header-content-length": str(len(encoded)), "content-type": "application/octet-stream"},
        )
    else:
        response = post_json(
            gateway_client,
            "/v2/models/breast_mass/infer",
            {"inputs": [{"name": "features", "datatype": "FP32", "shape": [rows, 30], "data": data}]},
        )
    body = assert_sane(response)
    if body is not None:
        probabilities = np.asarray(body["outputs"][0]["data"]).reshape(rows, 2)
        for row in probabilities:
            assert_probabilities(row.tolist())


@seed(SEED)
@EXAMPLES
@given(document=json_values)
def test_any_json_to_the_infer_routes(gateway_client: TestClient, document: Any) -> None:
    for model in ("breast_mass", "notes_classifier", "vitals_risk"):
        assert_sane(post_json(gateway_client, f"/v2/models/{model}/infer", document))


@seed(SEED)
@EXAMPLES
@given(
    extra=st.dictionaries(st.text(max_size=4), json_values, min_size=1, max_size=3),
    where=st.sampled_from(["top", "input"]),
)
def test_stray_keys_in_an_infer_request(gateway_client: TestClient, extra: dict[str, Any], where: str) -> None:
    tensor = {"name": "features", "datatype": "FP32", "shape": [1, 30], "data": [1.0] * 30}
    document = {"inputs": [{**tensor, **extra} if where == "input" else tensor]} | (extra if where == "top" else {})
    assert_sane(post_json(gateway_client, "/v2/models/breast_mass/infer", document))


@seed(SEED)
@EXAMPLES
@given(length=st.integers(1, 50), values=st.lists(numbers, min_size=6, max_size=6))
def test_vitals_task_route(gateway_client: TestClient, length: int, values: list[Any]) -> None:
    observations = [dict(zip(vitals_series.FEATURES, values, strict=True))] * length
    body = assert_sane(post_json(gateway_client, "/v1/models/vitals_risk/predict", {"observations": observations}))
    if body is not None:
        assert_one_shape(body)
        assert 0.0 <= body["risk"]["score"] <= 1.0 and body["label"] == body["risk"]["band"]


@seed(SEED)
@EXAMPLES
@given(text=st.text(max_size=300))
def test_notes_task_route(gateway_client: TestClient, text: str) -> None:
    response = gateway_client.post(
        "/v1/models/notes_classifier/predict", content=text.encode(), headers={"content-type": "text/plain"}
    )
    body = assert_sane(response)
    if body is not None:
        assert_one_shape(body)


@seed(SEED)
@EXAMPLES
@given(ids=st.lists(st.integers(-(2**40), 2**40), min_size=0, max_size=20))
def test_notes_infer_route(gateway_client: TestClient, ids: list[int]) -> None:
    document = {"inputs": [{"name": "tokens", "datatype": "INT64", "shape": [1, len(ids)], "data": ids}]}
    body = assert_sane(post_json(gateway_client, "/v2/models/notes_classifier/infer", document))
    if body is not None:
        assert_probabilities(body["outputs"][0]["data"])


@seed(SEED)
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    pixels=st.integers(0, 2**32 - 1).map(lambda s: np.random.default_rng(s)),
    size=st.sampled_from([(8, 8), (64, 48), (130, 128)]),
    mode=st.sampled_from(["L", "RGB", "I;16"]),
)
def test_scan_task_routes(
    gateway_client: TestClient, pixels: np.random.Generator, size: tuple[int, int], mode: str
) -> None:
    high = 65535 if mode == "I;16" else 255
    array = pixels.integers(0, high + 1, size=(size[1], size[0], 3) if mode == "RGB" else (size[1], size[0]))
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint16 if mode == "I;16" else np.uint8)).save(buffer, format="PNG")
    for model in ("scan_classifier", "scan_segmenter"):
        response = gateway_client.post(
            f"/v1/models/{model}/predict", content=buffer.getvalue(), headers={"content-type": "image/png"}
        )
        body = assert_sane(response)
        if body is not None:
            assert_one_shape(body)
