"""scan_classifier end to end: every input form, the answer's shape, and every refusal."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from model_store.build import chest_phantoms

PREDICT = "/v1/models/scan_classifier/predict"


@pytest.fixture(scope="module")
def phantoms() -> tuple[np.ndarray, np.ndarray]:
    return chest_phantoms.generate(4, seed=4242, size=128)


def check_answer(body: dict, expected_label: str) -> None:
    assert body["model"] == "scan_classifier" and body["model_version"] == "1"
    assert body["request_id"] and body["inference_ms"] > 0
    probabilities = list(body["probabilities"].values())
    assert probabilities == sorted(probabilities, reverse=True)
    assert set(body["probabilities"]) == {"clear", "opacity"}
    assert abs(sum(probabilities) - 1.0) < 1e-4
    assert body["label"] == next(iter(body["probabilities"])) == expected_label


def test_png_jpeg_and_dicom_raw_bodies(classifier_client: TestClient, phantoms) -> None:  # type: ignore[no-untyped-def]
    images, labels = phantoms
    for image, label in zip(images, labels, strict=True):
        expected = chest_phantoms.LABELS[label]
        jpeg = io.BytesIO()
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(jpeg, format="JPEG", quality=95)
        for content, media_type in (
            (chest_phantoms.to_png(image), "image/png"),
            (jpeg.getvalue(), "image/jpeg"),
            (chest_phantoms.to_dicom(image), "application/dicom"),
            (chest_phantoms.to_dicom(image, monochrome1=True), "application/dicom"),
        ):
            response = classifier_client.post(PREDICT, content=content, headers={"content-type": media_type})
            assert response.status_code == 200, response.text
            check_answer(response.json(), expected)


def test_multipart_and_json_base64(classifier_client: TestClient, phantoms) -> None:  # type: ignore[no-untyped-def]
    image, label = phantoms[0][1], chest_phantoms.LABELS[phantoms[1][1]]
    dicom = chest_phantoms.to_dicom(image)
    multipart = classifier_client.post(PREDICT, files={"file": ("scan.dcm", dicom, "application/octet-stream")})
    assert multipart.status_code == 200, multipart.text
    check_answer(multipart.json(), label)
    as_json = classifier_client.post(PREDICT, json={"image": base64.b64encode(chest_phantoms.to_png(image)).decode()})
    assert as_json.status_code == 200, as_json.text
    check_answer(as_json.json(), label)


def test_no_demographics_in_the_answer(classifier_client: TestClient, phantoms) -> None:  # type: ignore[no-untyped-def]
    dicom = chest_phantoms.to_dicom(
        phantoms[0][0], patient_name="Smith^Alice", patient_id="PID-31337", birth_date="19610203"
    )
    response = classifier_client.post(PREDICT, content=dicom, headers={"content-type": "application/dicom"})
    text = response.text
    assert response.status_code == 200
    assert "Smith" not in text and "31337" not in text and "19610203" not in text
    assert response.json()["sop_instance_uid"]  # what links the answer back instead


def test_request_id_is_echoed(classifier_client: TestClient, phantoms) -> None:  # type: ignore[no-untyped-def]
    response = classifier_client.post(
        PREDICT,
        content=chest_phantoms.to_png(phantoms[0][0]),
        headers={"content-type": "image/png", "x-request-id": "abc-123"},
    )
    assert response.json()["request_id"] == "abc-123" and response.headers["x-request-id"] == "abc-123"


@pytest.mark.parametrize(
    ("content", "headers", "status", "fragment"),
    [
        (b"hello", {"content-type": "text/plain"}, 415, "text/plain"),
        (b"hello", {}, 415, "Content-Type header is required"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 30, {"content-type": "image/png"}, 422, "PNG"),
        (b"not dicom at all", {"content-type": "application/dicom"}, 422, "not a DICOM file"),
        (b'{"image": "***"}', {"content-type": "application/json"}, 422, "base64"),
        (b'{"picture": "AAAA"}', {"content-type": "application/json"}, 422, '"image"'),
        (b"{", {"content-type": "application/json"}, 422, "not valid JSON"),
        (b"x" * (6 * 1024 * 1024 + 1), {"content-type": "image/png"}, 413, "limit"),
    ],
)
def test_bad_input_gets_a_clear_4xx(
    classifier_client: TestClient, content: bytes, headers: dict, status: int, fragment: str
) -> None:
    response = classifier_client.post(PREDICT, content=content, headers=headers)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


def test_unsupported_transfer_syntax_is_415(classifier_client: TestClient) -> None:
    from pydicom.data import get_testdata_file

    data = open(get_testdata_file("SC_rgb_jpeg_gdcm.dcm"), "rb").read()
    response = classifier_client.post(PREDICT, content=data, headers={"content-type": "application/dicom"})
    assert response.status_code == 415 and "JPEG Lossless" in response.json()["error"]


def test_unknown_model_is_404_and_the_process_survives(classifier_client: TestClient, phantoms) -> None:  # type: ignore[no-untyped-def]
    assert classifier_client.post("/v1/models/nope/predict", content=b"x").status_code == 404
    ok = classifier_client.post(
        PREDICT, content=chest_phantoms.to_png(phantoms[0][0]), headers={"content-type": "image/png"}
    )
    assert ok.status_code == 200


def test_listed_with_its_function(classifier_client: TestClient) -> None:
    rows = classifier_client.get("/v1/models").json()["models"]
    assert {
        "name": "scan_classifier",
        "version": "1",
        "task": "image_classification",
        "function": "scan_classifier",
        "ready": True,
        "reason": "",
    } in rows


def test_openapi_document_describes_the_routes(classifier_client: TestClient) -> None:
    spec = classifier_client.get("/openapi.json").json()
    assert "/v1/models/{model}/predict" in spec["paths"]
    assert "/v2/models/{model}/versions/{version}/infer" in spec["paths"]
    assert classifier_client.get("/docs").status_code == 200
    refs = re.findall(r'"\$ref": ?"#/components/schemas/([^"]+)"', json.dumps(spec))
    assert refs and set(refs) <= set(spec["components"]["schemas"])  # every reference resolves
    infer = spec["paths"]["/v2/models/{model}/infer"]["post"]
    assert infer["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/InferenceResponse")
    assert "4XX" in infer["responses"] and "application/octet-stream" in infer["requestBody"]["content"]
    versioned = spec["paths"]["/v2/models/{model}/versions/{version}/infer"]["post"]
    assert {p["name"] for p in versioned["parameters"] if p["in"] == "path"} == {"model", "version"}


def test_model_card_metric_holds_on_fresh_phantoms(classifier_handler) -> None:  # type: ignore[no-untyped-def]
    """Held-out accuracy, recomputed on phantoms from a seed the training never saw, through PNG."""
    from medfn.serving.model import Payload

    model = classifier_handler.function.plane.get("scan_classifier")
    assert "not for clinical use" in model.config.card["limitations"]
    images, labels = chest_phantoms.generate(400, seed=20261122, size=128)
    predicted = [
        chest_phantoms.LABELS.index(model.predict(Payload(chest_phantoms.to_png(img), "image/png")).label)
        for img in images
    ]
    accuracy = float(np.mean(np.asarray(predicted) == labels))
    assert accuracy >= 0.95, accuracy
    assert abs(accuracy - model.config.card["metrics"]["accuracy"]) < 0.05
