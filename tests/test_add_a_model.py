"""Adding a model without serving code: an ONNX file, model.toml, function.toml, handler.py.

Follows the README's "Add your own model" walk-through with a model built on the fly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from medfn.gateway import load_gateway_plane
from medfn.http import create_app
from tests.onnx_builders import linear_softmax_model

WEIGHTS = np.asarray([[0.0, 1.5], [0.0, -2.0], [0.0, 0.5]], dtype=np.float32)
BIAS = np.asarray([0.0, -0.25], dtype=np.float32)

MODEL_TOML = """\
name = "sepsis_screen"
task = "tabular_classification"
max_batch_size = 16

[[inputs]]
name = "features"
datatype = "FP32"
shape = [-1, 3]

[[outputs]]
name = "probabilities"
datatype = "FP32"
shape = [-1, 2]

[preprocessing]
features = ["lactate", "map_ratio", "age_decades"]

[postprocessing]
labels = ["negative", "positive"]
positive_label = "positive"

[versions.1.sha256]
"model.onnx" = "{sha}"

[card]
summary = "A logistic model built by a test."
data = "none"
intended_use = "testing"
limitations = "demonstration model, not for clinical use"
"""

FUNCTION_TOML = """\
name = "sepsis_screen"
model = "sepsis_screen"
memory_mb = 512
timeout_s = 10
"""

HANDLER = """\
from medfn.lambda_handler import make_handler

handler = make_handler(__file__)
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh project tree: model_store/ and functions/, nothing else."""
    root = tmp_path_factory.mktemp("project")
    onnx_bytes = linear_softmax_model(WEIGHTS, BIAS)
    (root / "model_store" / "sepsis_screen" / "1").mkdir(parents=True)
    (root / "model_store" / "sepsis_screen" / "1" / "model.onnx").write_bytes(onnx_bytes)
    (root / "model_store" / "sepsis_screen" / "model.toml").write_text(
        MODEL_TOML.format(sha=hashlib.sha256(onnx_bytes).hexdigest())
    )
    (root / "functions" / "sepsis_screen").mkdir(parents=True)
    (root / "functions" / "sepsis_screen" / "function.toml").write_text(FUNCTION_TOML)
    (root / "functions" / "sepsis_screen" / "handler.py").write_text(HANDLER)
    return root


def expected_positive(record: dict[str, float]) -> float:
    x = np.asarray([record["lactate"], record["map_ratio"], record["age_decades"]], dtype=np.float32)
    logits = x @ WEIGHTS + BIAS
    e = np.exp(logits - logits.max())
    return float(e[1] / e.sum())


RECORDS = [
    {"lactate": 4.1, "map_ratio": 0.6, "age_decades": 7.0},
    {"lactate": 0.9, "map_ratio": 1.1, "age_decades": 3.0},
]


def test_the_function_folder_holds_no_serving_code(project: Path) -> None:
    files = sorted(p.name for p in (project / "functions" / "sepsis_screen").iterdir())
    assert files == ["function.toml", "handler.py"]
    assert (project / "functions" / "sepsis_screen" / "handler.py").read_text() == HANDLER


def test_served_by_the_local_gateway(project: Path) -> None:
    client = TestClient(create_app(load_gateway_plane(project / "functions")))
    assert client.get("/v1/models").json()["models"][0]["ready"] is True
    for record in RECORDS:
        answer = client.post("/v1/models/sepsis_screen/predict", json=record).json()
        assert answer["probabilities"]["positive"] == pytest.approx(expected_positive(record), abs=1e-6)
        assert answer["label"] == ("positive" if expected_positive(record) > 0.5 else "negative")
    batch = client.post("/v1/models/sepsis_screen/predict", json={"records": RECORDS}).json()["records"]["predictions"]
    assert [p["probabilities"]["positive"] for p in batch] == pytest.approx(
        [expected_positive(r) for r in RECORDS], abs=1e-6
    )
    oip = client.post(
        "/v2/models/sepsis_screen/infer",
        json={"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": list(RECORDS[0].values())}]},
    ).json()
    assert oip["outputs"][0]["data"][1] == pytest.approx(expected_positive(RECORDS[0]), abs=1e-6)


def test_answers_through_its_lambda_handler(project: Path) -> None:
    from tests.sources.test_http import Context, decoded_body, http_event

    spec = importlib.util.spec_from_file_location(
        "sepsis_handler", project / "functions" / "sepsis_screen" / "handler.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    event = http_event(
        "apigw_http", "POST", "/v1/models/sepsis_screen/predict", json.dumps(RECORDS[0]).encode(), "application/json"
    )
    response = module.handler(event, Context())
    assert response["statusCode"] == 200
    assert json.loads(decoded_body(response))["probabilities"]["positive"] == pytest.approx(
        expected_positive(RECORDS[0]), abs=1e-6
    )
