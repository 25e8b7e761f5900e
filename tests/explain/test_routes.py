"""`POST /v1/models/{m}/explain`, the OIP `saliency` output, and the plain answer left as it was."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from model_store.build import chest_phantoms, ct_phantoms

EXPLAIN = "/v1/models/scan_classifier/explain"


@pytest.fixture(scope="module")
def scan() -> bytes:
    images, labels = chest_phantoms.generate(4, seed=6061, size=192)
    return chest_phantoms.to_png(images[int(np.argmax(labels))])


def overlay_of(details: dict) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(details["overlay_png_base64"])))


def test_explain_answers_the_prediction_and_the_map(classifier_client: TestClient, scan: bytes) -> None:
    predicted = classifier_client.post("/v1/models/scan_classifier/predict", content=scan,
                                       headers={"content-type": "image/png"}).json()  # fmt: skip
    response = classifier_client.post(EXPLAIN, content=scan, headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] == predicted["label"] == "opacity"
    assert body["probabilities"] == pytest.approx(predicted["probabilities"], abs=1e-6)
    assert set(predicted) == set(body) - {"explanation"}  # the same answer, one key more
    explanation = body["explanation"]
    assert explanation["method"] == "grad-cam"
    details = explanation["details"]
    assert details["map_shape"] == [16, 16] and np.asarray(details["map"]).shape == (16, 16)
    assert details["label"] == "opacity" and details["output"] == "saliency"
    overlay = overlay_of(details)
    assert overlay.format == "PNG" and overlay.mode == "RGB" and overlay.size == (192, 192)
    assert details["overlay_shape"] == [192, 192]


def test_every_body_form_and_the_png_itself(classifier_client: TestClient, scan: bytes) -> None:
    as_json = classifier_client.post(EXPLAIN, json={"image": base64.b64encode(scan).decode()})
    multipart = classifier_client.post(EXPLAIN, files={"file": ("scan.png", scan, "application/octet-stream")})
    dicom = chest_phantoms.to_dicom(np.asarray(Image.open(io.BytesIO(scan)), dtype=np.float32) / 255)
    as_dicom = classifier_client.post(EXPLAIN, content=dicom, headers={"content-type": "application/dicom"})
    for response in (as_json, multipart, as_dicom):
        assert response.status_code == 200, response.text
        assert response.json()["explanation"]["method"] == "grad-cam"
    assert as_dicom.json()["sop_instance_uid"]
    large = chest_phantoms.to_dicom(chest_phantoms.generate(2, seed=6065, size=512)[0][1])
    capped = classifier_client.post(EXPLAIN, content=large, headers={"content-type": "application/dicom"})
    details = capped.json()["explanation"]["details"]
    assert details["overlay_shape"] == [256, 256] and overlay_of(details).size == (256, 256)
    png = classifier_client.post(EXPLAIN, content=scan, headers={"content-type": "image/png", "accept": "image/png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (192, 192)


def test_errors_are_answers(classifier_client: TestClient, affine_client: TestClient) -> None:
    truncated = b"\x89PNG\r\n\x1a\nnot really"
    broken = classifier_client.post(EXPLAIN, content=truncated, headers={"content-type": "image/png"})
    assert broken.status_code == 422 and set(broken.json()) == {"error"}
    wrong_type = classifier_client.post(EXPLAIN, content=b"hello", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415 and "error" in wrong_type.json()
    unknown = classifier_client.post("/v1/models/nope/explain", content=b"x", headers={"content-type": "image/png"})
    assert unknown.status_code == 404
    tensors_only = affine_client.post("/v1/models/affine/explain", content=b"x", headers={"content-type": "image/png"})
    assert tensors_only.status_code == 400 and "cannot explain" in tensors_only.json()["error"]


def test_segmenter_explains_with_its_probability_map(gateway_client: TestClient) -> None:
    image = ct_phantoms.window(ct_phantoms.generate(1, seed=4545)[0][0])
    response = gateway_client.post("/v1/models/scan_segmenter/explain", content=ct_phantoms.to_png(image),
                                   headers={"content-type": "image/png"})  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    explanation = body["explanation"]
    assert explanation["method"] == "probability-map" and "mask" in body
    values = np.asarray(explanation["details"]["map"])
    assert values.shape == (64, 64) and 0.0 <= values.min() and values.max() <= 1.0  # averaged down from 128
    assert (values.max() >= 0.5) == (body["label"] != "none")
    assert overlay_of(explanation["details"]).mode == "RGB"


def infer(client: TestClient, image: np.ndarray, outputs: list[str] | None) -> dict:
    request: dict = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 128, 128],
                                 "data": image.ravel().tolist()}]}  # fmt: skip
    if outputs is not None:
        request["outputs"] = [{"name": name} for name in outputs]
    response = client.post("/v2/models/scan_classifier/infer", json=request)
    assert response.status_code == 200, response.text
    return {output["name"]: output for output in response.json()["outputs"]}


def test_inference_protocol_gives_saliency_only_when_named(classifier_client: TestClient) -> None:
    image = chest_phantoms.generate(2, seed=6062)[0][1]
    plain = infer(classifier_client, image, None)
    assert list(plain) == ["probabilities"]
    named = infer(classifier_client, image, ["probabilities", "saliency"])
    assert named["saliency"]["shape"] == [1, 2, 16, 16] and named["saliency"]["datatype"] == "FP32"
    assert named["probabilities"]["data"] == pytest.approx(plain["probabilities"]["data"], abs=1e-6)
    assert list(infer(classifier_client, image, ["saliency"])) == ["saliency"]
    metadata = classifier_client.get("/v2/models/scan_classifier").json()
    assert [t["name"] for t in metadata["outputs"]] == ["probabilities", "saliency"]


def test_the_openapi_document_has_the_route(classifier_client: TestClient) -> None:
    document = classifier_client.get("/openapi.json").json()
    operation = document["paths"]["/v1/models/{model}/explain"]["post"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("ExplainResponse")
    assert "explanation" in document["components"]["schemas"]["ExplainResponse"]["properties"]
