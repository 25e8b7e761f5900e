"""Open Inference Protocol v2: the spec's routes and shapes, the binary extension, tritonclient."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

X = [[1.0, 2.0, 3.0, 4.0]]


def infer_body(data=X, **extra) -> bytes:  # type: ignore[no-untyped-def]
    shape = list(np.asarray(data).shape)
    flat = np.asarray(data, dtype=np.float32).ravel().tolist()
    return orjson.dumps({"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": flat}], **extra})


def test_server_metadata_live_and_ready(affine_client: TestClient) -> None:
    meta = affine_client.get("/v2").json()
    assert meta["name"] == "medfn" and "binary_tensor_data" in meta["extensions"]
    assert affine_client.get("/v2/health/live").status_code == 200
    # tampered and hollow are not ready, so the server is not ready either
    assert affine_client.get("/v2/health/ready").status_code == 503


def test_model_metadata_follows_the_spec(affine_client: TestClient) -> None:
    meta = affine_client.get("/v2/models/affine").json()
    assert meta["name"] == "affine"
    assert meta["versions"] == ["1", "2"]
    assert meta["platform"] == "onnx_onnxv1"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["parameters"]["provider"] == "CPUExecutionProvider"
    assert affine_client.get("/v2/models/affine/versions/1").json()["parameters"]["version"] == "1"


def test_model_ready_answers_with_the_status(affine_client: TestClient) -> None:
    assert affine_client.get("/v2/models/affine/ready").json() == {"name": "affine", "ready": True}
    assert affine_client.get("/v2/models/affine/versions/1/ready").status_code == 200
    assert affine_client.get("/v2/models/tampered/ready").status_code == 503


def test_json_infer_echoes_id_and_reaches_the_version_asked(affine_client: TestClient) -> None:
    latest = affine_client.post("/v2/models/affine/infer", content=infer_body(id="req-7"))
    assert latest.status_code == 200
    body = latest.json()
    assert body["id"] == "req-7" and body["model_name"] == "affine" and body["model_version"] == "2"
    assert body["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [1, 4], "data": [4.0, 7.0, 10.0, 13.0]}]
    v1 = affine_client.post("/v2/models/affine/versions/1/infer", content=infer_body()).json()
    assert v1["model_version"] == "1" and v1["outputs"][0]["data"] == [3.0, 5.0, 7.0, 9.0]
    assert "id" not in v1  # no id given, none invented


def test_infer_needs_no_content_type_and_takes_nested_data(affine_client: TestClient) -> None:
    body = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [[0, 0, 0, 0], [1, 1, 1, 1]]}]}
    )
    response = affine_client.post("/v2/models/affine/infer", content=body, headers={"content-type": ""})
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == [1.0] * 4 + [4.0] * 4


def test_binary_tensor_extension_both_ways(affine_client: TestClient) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    head = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    )
    response = affine_client.post(
        "/v2/models/affine/infer",
        content=head + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(head)), "content-type": "application/octet-stream"},
    )
    assert response.status_code == 200
    split = int(response.headers["inference-header-content-length"])
    meta = orjson.loads(response.content[:split])
    output = meta["outputs"][0]
    assert output["parameters"]["binary_data_size"] == 32 and "data" not in output
    y = np.frombuffer(response.content[split:], dtype="<f4").reshape(output["shape"])
    np.testing.assert_array_equal(y, x * 3 + 1)


def test_binary_data_output_parameter_makes_every_output_binary(affine_client: TestClient) -> None:
    response = affine_client.post(
        "/v2/models/affine/infer", content=infer_body(parameters={"binary_data_output": True})
    )
    split = int(response.headers["inference-header-content-length"])
    assert np.frombuffer(response.content[split:], dtype="<f4").tolist() == [4.0, 7.0, 10.0, 13.0]


@pytest.mark.parametrize(
    ("body", "headers", "fragment"),
    [
        (b"{not json", {}, "not valid JSON"),
        (orjson.dumps({"inputs": []}), {}, "non-empty list"),
        (infer_body([[1.0, 2.0, 3.0]]), {}, "shape [1, 3]"),
        (
            orjson.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}]}),
            {},
            "must be FP32",
        ),
        (
            orjson.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP99", "data": [1, 2, 3, 4]}]}),
            {},
            "FP99",
        ),
        (
            orjson.dumps({"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
            {},
            "no input named 'z'",
        ),
        (orjson.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2]}]}), {}, "needs 4"),
        (
            orjson.dumps(
                {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ["a", "b", "c", "d"]}]}
            ),
            {},
            "not a list of FP32",
        ),
        (
            orjson.dumps({"inputs": [{"name": "x", "shape": [1, -4], "datatype": "FP32", "data": [1]}]}),
            {},
            "non-negative",
        ),
        (infer_body(), {"Inference-Header-Content-Length": "99999"}, "larger than the body"),
        (infer_body(), {"Inference-Header-Content-Length": "abc"}, "whole number"),
        (infer_body(outputs=[{"name": "nope"}]), {}, "no outputs ['nope']"),
    ],
)
def test_bad_tensors_get_400_with_a_reason(
    affine_client: TestClient, body: bytes, headers: dict, fragment: str
) -> None:
    response = affine_client.post("/v2/models/affine/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


def test_binary_size_that_lies_is_refused(affine_client: TestClient) -> None:
    head = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 12}}]}
    )
    response = affine_client.post(
        "/v2/models/affine/infer",
        content=head + b"\0" * 12,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert response.status_code == 400 and "binary_data_size" in response.json()["error"]


def test_unknown_model_version_and_not_ready(affine_client: TestClient) -> None:
    assert affine_client.post("/v2/models/nope/infer", content=infer_body()).status_code == 404
    assert affine_client.post("/v2/models/affine/versions/9/infer", content=infer_body()).status_code == 404
    response = affine_client.post("/v2/models/tampered/infer", content=infer_body())
    assert response.status_code == 503 and "sha256" in response.json()["error"]


def test_body_over_the_limit_is_413(affine_client: TestClient) -> None:
    response = affine_client.post("/v2/models/affine/infer", content=b" " * (64 * 1024 + 1))
    assert response.status_code == 413 and "limit" in response.json()["error"]


@pytest.mark.parametrize("binary", [True, False])
def test_unmodified_tritonclient_works(live_affine_url: str, binary: bool) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=live_affine_url)
    assert client.is_server_live()
    assert client.is_model_ready("affine")
    assert client.get_model_metadata("affine")["inputs"][0]["name"] == "x"
    x = np.array([[0.5, 1.0, 1.5, 2.0]], dtype=np.float32)
    tensor = httpclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    output = httpclient.InferRequestedOutput("y", binary_data=binary)
    result = client.infer("affine", [tensor], outputs=[output], request_id="triton-1", model_version="1")
    np.testing.assert_allclose(result.as_numpy("y"), x * 2 + 1)
    assert result.get_response()["id"] == "triton-1"
    # default settings: binary input, no outputs named
    plain = httpclient.InferInput("x", list(x.shape), "FP32")
    plain.set_data_from_numpy(x)
    np.testing.assert_allclose(client.infer("affine", [plain]).as_numpy("y"), x * 3 + 1)
