"""Models as real exporters make them, served by configuration alone and compared with what the
exporter's own framework predicts on the same input (probabilities within 1e-4, labels equal):

- a Keras-style classifier: channel-last input, pixels scaled x/127.5 - 1, nearest resize, logits;
- a torchvision-style classifier: NCHW, ImageNet mean and std on 0-1 pixels, softmax at the end;
- a scikit-learn pipeline converted with skl2onnx;
- a single sigmoid score with a threshold and a positive label.

The image graphs are built with onnx.helper in the exporters' layouts and op patterns (TensorFlow
does not install here); their reference predictions are the same arithmetic in numpy.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from medfn.function import load_models
from medfn.http import create_app
from medfn.serving import InferencePlane, LocalStore, Payload
from tests.onnx_builders import write_model_folder

RNG = np.random.default_rng(20261207)
WEIGHTS = RNG.normal(size=(3, 2)).astype(np.float32)
BIAS = np.asarray([0.1, -0.2], dtype=np.float32)
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
# How a Keras export is served: channel-last, x / 127.5 - 1, nearest resize, logits out.
KERAS_TOML = """
[preprocessing]
layout = "NHWC"
color = "RGB"
size = [32, 32]
scale = "byte"
mean = [127.5]
std = [127.5]
resize = "nearest"

[postprocessing]
labels = ["cat", "dog"]
activation = "softmax"
"""


def pooled_linear(layout: str, size: int, softmax: bool) -> bytes:
    """Global average pooling then a linear head: Keras's (NHWC, logits) or torchvision's (NCHW)."""
    shape = ["batch", size, size, 3] if layout == "NHWC" else ["batch", 3, size, size]
    axes = [1, 2] if layout == "NHWC" else [2, 3]
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["pooled"], axes=axes, keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits" if softmax else "scores"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["scores"], axis=1))
    graph = helper.make_graph(
        nodes,
        "pooled_linear",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(WEIGHTS, "w"), numpy_helper.from_array(BIAS, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


Tensor = tuple[str, str, list[int]]  # name, datatype, shape


def served(
    root: Path, name: str, versions: dict[int, bytes], task: str, toml: str, inputs: list[Tensor],
    outputs: list[Tensor], batch: int = 8,
) -> TestClient:  # fmt: skip
    """A model folder whose model.toml declares `inputs` and `outputs`, served by a fresh plane."""
    folder = write_model_folder(root, name, versions, task=task, extra_toml=toml)
    blocks = [
        f'[[{kind}]]\nname = "{tensor}"\ndatatype = "{datatype}"\nshape = {shape}\n'
        for kind, tensors in (("inputs", inputs), ("outputs", outputs))
        for tensor, datatype, shape in tensors
    ]
    text = (folder / "model.toml").read_text().replace("max_batch_size = 8", f"max_batch_size = {batch}")
    declared = (  # what write_model_folder declares for its affine graphs
        '[[inputs]]\nname = "x"\ndatatype = "FP32"\nshape = [-1, 4]\n\n'
        '[[outputs]]\nname = "y"\ndatatype = "FP32"\nshape = [-1, 4]\n'
    )
    assert declared in text
    (folder / "model.toml").write_text(text.replace(declared, "\n".join(blocks)))
    plane = InferencePlane()
    plane.add(name, load_models(LocalStore(root), name))
    assert plane.get(name).ready, plane.get(name).reason
    return TestClient(create_app(plane, metrics_route=False))


def serve(root: Path, name: str, versions: dict[int, bytes], toml: str, shape: list[int]) -> TestClient:
    """An image classifier reading `image` and answering two `scores`."""
    image, scores = ("image", "FP32", shape), ("scores", "FP32", [-1, 2])
    return served(root, name, versions, "image_classification", toml, [image], [scores])


def served_breast_mass(
    root: Path, name: str, exported: bytes, features: list[str], outputs: tuple[str, str]
) -> TestClient:
    """A scikit-learn export of the breast_mass data: its label output, and the probabilities read."""
    label, probabilities = outputs
    names = ", ".join(f'"{f}"' for f in features)
    toml = f"""
[preprocessing]
features = [{names}]

[postprocessing]
labels = ["benign", "malignant"]
output = "{probabilities}"
"""
    declared = [(label, "INT64", [-1]), (probabilities, "FP32", [-1, 2])]
    return served(root, name, {1: exported}, "tabular_classification", toml, [("X", "FP32", [-1, 30])], declared)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def assert_same(answer: dict, expected: np.ndarray) -> None:  # type: ignore[type-arg]
    labels = ["cat", "dog"]
    got = np.asarray([answer["probabilities"][label] for label in labels])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert answer["label"] == labels[int(np.argmax(expected))]


def test_a_keras_style_export_channel_last_logits_nearest_resize(tmp_path: Path) -> None:
    client = serve(tmp_path, "keras_like", {1: pooled_linear("NHWC", 32, softmax=False)}, KERAS_TOML, [-1, 32, 32, 3])
    pixels = RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    answer = client.post("/v1/models/keras_like/predict", content=png(pixels), headers={"content-type": "image/png"})
    assert answer.status_code == 200, answer.text
    # what Keras computes: nearest resize (each 2x2 block's lower-right pixel), x / 127.5 - 1, the head
    x = pixels[1::2, 1::2].astype(np.float32) / 127.5 - 1.0
    assert_same(answer.json(), softmax(x.mean(axis=(0, 1)) @ WEIGHTS + BIAS))
    tensor = {"name": "image", "datatype": "FP32", "shape": [1, 32, 32, 3], "data": x.ravel().tolist()}
    raw = client.post("/v2/models/keras_like/infer", json={"inputs": [tensor]}).json()
    np.testing.assert_allclose(raw["outputs"][0]["data"], x.mean(axis=(0, 1)) @ WEIGHTS + BIAS, atol=1e-4)


def test_a_torchvision_style_export_imagenet_normalised(tmp_path: Path) -> None:
    toml = f"""
[preprocessing]
color = "RGB"
size = [16, 16]
mean = {IMAGENET_MEAN}
std = {IMAGENET_STD}

[postprocessing]
labels = ["cat", "dog"]
"""
    client = serve(tmp_path, "torch_like", {1: pooled_linear("NCHW", 16, softmax=True)}, toml, [-1, 3, 16, 16])
    pixels = RNG.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    answer = client.post("/v1/models/torch_like/predict", content=png(pixels), headers={"content-type": "image/png"})
    assert answer.status_code == 200, answer.text
    x = (pixels.astype(np.float32) / 255.0 - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    assert_same(answer.json(), softmax(x.mean(axis=(0, 1)) @ WEIGHTS + BIAS))


def test_a_new_version_with_another_layout_and_size_beside_the_old(tmp_path: Path) -> None:
    toml = """
[version_policy]
policy = "all"

[preprocessing]
color = "RGB"
size = [16, 16]

[postprocessing]
labels = ["cat", "dog"]
activation = "softmax"

[versions.2.preprocessing]
layout = "NHWC"
size = [32, 32]

[[versions.2.inputs]]
name = "image"
datatype = "FP32"
shape = [-1, 32, 32, 3]
"""
    versions = {1: pooled_linear("NCHW", 16, softmax=False), 2: pooled_linear("NHWC", 32, softmax=False)}
    client = serve(tmp_path, "two_exports", versions, toml, [-1, 3, 16, 16])
    plane = client.app.state.plane  # type: ignore[attr-defined]
    pixels = RNG.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    for version, shape in ((1, (1, 3, 16, 16)), (2, (1, 32, 32, 3))):
        model = plane.get("two_exports", version)
        assert model.ready, model.reason
        inputs, _ = model.prepare(Payload(png(pixels), "image/png"))
        assert inputs["image"].shape == shape
        assert plane.predict_blocking(model, Payload(png(pixels), "image/png")).label in {"cat", "dog"}


def test_a_scikit_learn_pipeline_converted_with_skl2onnx(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from model_store.build.breast_cancer_data import split

    x_train, x_test, y_train, _, features = split()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_train, y_train)
    exported = to_onnx(pipeline, x_train[:1], options={id(pipeline): {"zipmap": False}}).SerializeToString()
    client = served_breast_mass(tmp_path, "sk", exported, features, ("label", "probabilities"))
    records = [dict(zip(features, map(float, row), strict=True)) for row in x_test[:8]]
    answers = client.post("/v1/models/sk/predict", json={"records": records}).json()["records"]["predictions"]
    expected = pipeline.predict_proba(x_test[:8])
    for answer, want, label in zip(answers, expected, pipeline.predict(x_test[:8]), strict=True):
        got = [answer["probabilities"]["benign"], answer["probabilities"]["malignant"]]
        np.testing.assert_allclose(got, want, atol=1e-4)
        assert answer["label"] == ["benign", "malignant"][int(label)]


@pytest.mark.parametrize("threshold", [0.3, 0.7])
def test_a_single_sigmoid_score_with_a_threshold(tmp_path: Path, threshold: float) -> None:
    weights = RNG.normal(size=(5, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["score"])],
        "score",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 5])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    toml = f"""
[preprocessing]
features = ["a", "b", "c", "d", "e"]

[postprocessing]
labels = ["negative", "positive"]
activation = "sigmoid"
positive_label = "positive"
threshold = {threshold}
"""
    client = served(
        tmp_path, "one", {1: model.SerializeToString()}, "tabular_classification", toml,
        [("x", "FP32", [-1, 5])], [("score", "FP32", [-1, 1])],
    )  # fmt: skip
    for row in RNG.normal(size=(10, 5)):
        answer = client.post("/v1/models/one/predict", json=dict(zip("abcde", map(float, row), strict=True))).json()
        p = 1.0 / (1.0 + np.exp(-(row.astype(np.float32) @ weights)[0]))
        assert answer["probabilities"]["positive"] == pytest.approx(p, abs=1e-5)
        assert answer["label"] == ("positive" if p >= threshold else "negative")


def test_a_scikit_learn_model_exported_with_its_default_zipmap(tmp_path: Path) -> None:
    """skl2onnx's default output: a label tensor and the probabilities as a sequence of maps."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    from model_store.build.breast_cancer_data import split

    x_train, x_test, y_train, _, features = split()
    classifier = LogisticRegression(max_iter=5000).fit(x_train, y_train)
    exported = to_onnx(classifier, x_train[:1]).SerializeToString()
    client = served_breast_mass(tmp_path, "zipmap", exported, features, ("output_label", "output_probability"))
    for row, want in zip(x_test[:5], classifier.predict_proba(x_test[:5]), strict=True):
        answer = client.post("/v1/models/zipmap/predict", json=dict(zip(features, map(float, row), strict=True))).json()
        got = [answer["probabilities"]["benign"], answer["probabilities"]["malignant"]]
        np.testing.assert_allclose(got, want, atol=1e-4)
    tensor = {"name": "X", "datatype": "FP32", "shape": [1, 30], "data": x_test[0].tolist()}
    raw = client.post("/v2/models/zipmap/infer", json={"inputs": [tensor]}).json()
    assert {o["name"] for o in raw["outputs"]} == {"output_label", "output_probability"}


def test_a_graph_without_a_batch_axis_and_a_multi_label_head(tmp_path: Path) -> None:
    """One image in, [3, 16, 16] with no batch axis (max_batch_size = 0); two independent labels."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["pooled"], axes=[1, 2], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["scores"]),
        ],
        "unbatched",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [3, 16, 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2])],
        initializer=[numpy_helper.from_array(WEIGHTS, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    toml = """
[preprocessing]
color = "RGB"
size = [16, 16]

[postprocessing]
labels = ["effusion", "nodule"]
activation = "sigmoid"
multi_label = true
threshold = 0.5
"""
    client = served(
        tmp_path, "flat", {1: model.SerializeToString()}, "image_classification", toml,
        [("image", "FP32", [3, 16, 16])], [("scores", "FP32", [2])], batch=0,
    )  # fmt: skip
    pixels = RNG.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    answer = client.post("/v1/models/flat/predict", content=png(pixels), headers={"content-type": "image/png"}).json()
    p = 1.0 / (1.0 + np.exp(-((pixels.astype(np.float32) / 255.0).mean(axis=(0, 1)) @ WEIGHTS)))
    np.testing.assert_allclose([answer["probabilities"]["effusion"], answer["probabilities"]["nodule"]], p, atol=1e-4)
    expected = [
        label for label, q in sorted(zip(["effusion", "nodule"], p, strict=True), key=lambda x: -x[1]) if q >= 0.5
    ]
    assert answer["classes"]["present"] == expected
    assert answer["label"] == (expected[0] if expected else "none")


def test_the_keras_style_export_through_the_lambda_handler_and_the_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from medfn.lambda_handler import make_handler
    from medfn.pipeline.analysis import analyse
    from tests.onnx_builders import write_function
    from tests.sources.test_http import Context, decoded_body, http_event

    serve(
        tmp_path / "model_store",
        "keras_like",
        {1: pooled_linear("NHWC", 32, softmax=False)},
        KERAS_TOML,
        [-1, 32, 32, 3],
    )
    folder = write_function(tmp_path / "functions", "keras_fn", "keras_like", "[triggers]\nuploads = true\n")
    monkeypatch.setenv("MEDFN_MODEL_STORE", str(tmp_path / "model_store"))
    handler = make_handler(str(folder / "handler.py"))
    pixels = RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    x = pixels[1::2, 1::2].astype(np.float32) / 127.5 - 1.0
    expected = softmax(x.mean(axis=(0, 1)) @ WEIGHTS + BIAS)
    event = http_event("apigw_rest", "POST", "/v1/models/keras_like/predict", png(pixels), "image/png")
    response = handler(event, Context())
    assert response["statusCode"] == 200
    assert_same(json.loads(decoded_body(response)), expected)
    assert_same(analyse(handler.function.plane, "keras_like", png(pixels)).body, expected)  # the scan pipeline's step
