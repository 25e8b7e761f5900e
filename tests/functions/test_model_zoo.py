"""The four functions beside scan_classifier: metrics recomputed on fresh data through HTTP and
the Lambda handler, and the 4xx each promises."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from medfn.gateway import load_gateway_plane
from medfn.http import create_app
from tests.conftest import REPO

FUNCTIONS = ["breast_mass", "notes_classifier", "vitals_risk", "scan_segmenter"]


@pytest.fixture(scope="module")
def zoo() -> TestClient:
    """The local gateway's app with the four functions, as `medfn serve --only ...` builds it."""
    return TestClient(create_app(load_gateway_plane(REPO / "functions", FUNCTIONS)))


def predict(client: TestClient, model: str, **kwargs) -> dict:  # type: ignore[no-untyped-def]
    response = client.post(f"/v1/models/{model}/predict", **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def refusal(client: TestClient, model: str, status: int = 422, **kwargs) -> str:  # type: ignore[no-untyped-def]
    response = client.post(f"/v1/models/{model}/predict", **kwargs)
    assert response.status_code == status, response.text
    return str(response.json()["error"])


def test_every_function_is_listed_ready(zoo: TestClient) -> None:
    rows = {row["name"]: row for row in zoo.get("/v1/models").json()["models"]}
    for name in FUNCTIONS:
        assert rows[name]["ready"], rows[name]
        assert zoo.get(f"/v2/models/{name}/ready").status_code == 200
        card = zoo.app.state.plane.get(name).config.card
        assert card["metrics"] and card["intended_use"] and "not for" in card["limitations"]


# -- breast_mass ------------------------------------------------------------------------------


def test_breast_mass_accuracy_on_the_held_out_split(zoo: TestClient) -> None:
    from model_store.build.breast_cancer_data import split

    _, x_test, _, y_test, names = split()
    records = [dict(zip(names, map(float, row), strict=True)) for row in x_test]
    predictions = []
    for start in range(0, len(records), 64):  # batches, as a client would send them
        predictions += predict(zoo, "breast_mass", json={"records": records[start : start + 64]})["records"][
            "predictions"
        ]
    predicted = np.asarray([p["label"] == "malignant" for p in predictions], dtype=int)
    accuracy = float(np.mean(predicted == y_test))
    assert accuracy >= 0.95, accuracy
    card = zoo.app.state.plane.get("breast_mass").config.card["metrics"]
    assert abs(accuracy - card["accuracy"]) < 1e-6  # the same split: exactly the card's figure


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda r: r.pop("mean radius"), "missing feature 'mean radius'"),
        (lambda r: r.update({"shoe size": 42.0}), "unknown feature 'shoe size'"),
        (lambda r: r.update({"mean texture": "high"}), "'mean texture' must be a number"),
        (lambda r: r.update({"mean area": True}), "'mean area' must be a number"),
        (lambda r: r.update({"worst area": float("nan")}), "'worst area' must be finite"),
        (lambda r: r.update({"worst area": float("inf")}), "'worst area' must be finite"),
    ],
)
def test_breast_mass_bad_records_name_the_feature(zoo: TestClient, change, fragment: str) -> None:  # type: ignore[no-untyped-def]
    from model_store.build.breast_cancer_data import split

    _, x_test, _, _, names = split()
    record = dict(zip(names, map(float, x_test[0]), strict=True))
    change(record)
    body = json.dumps(record).encode()  # Python's json writes NaN and Infinity, as clients do
    assert fragment in refusal(zoo, "breast_mass", content=body, headers={"content-type": "application/json"})


# -- notes_classifier ----------------------------------------------------------------------------


def test_notes_macro_f1_on_fresh_notes(zoo: TestClient) -> None:
    from sklearn.metrics import f1_score

    from model_store.build import notes_corpus

    notes, labels = notes_corpus.generate(300, seed=777001)
    predicted = [
        notes_corpus.CATEGORIES.index(
            predict(zoo, "notes_classifier", content=n.encode(), headers={"content-type": "text/plain"})["label"]
        )
        for n in notes
    ]
    macro_f1 = float(f1_score(labels, predicted, average="macro"))
    assert macro_f1 >= 0.9, macro_f1
    assert abs(macro_f1 - zoo.app.state.plane.get("notes_classifier").config.card["metrics"]["macro_f1"]) < 0.06


def test_notes_json_form_and_refusals(zoo: TestClient) -> None:
    answer = predict(zoo, "notes_classifier", json={"text": "Wheeze and productive cough, SpO2 91% on air."})
    assert answer["label"] in {"respiratory"} and answer["text"]["tokens"] > 0
    assert "empty" in refusal(zoo, "notes_classifier", content=b"   ", headers={"content-type": "text/plain"})
    assert "UTF-8" in refusal(
        zoo, "notes_classifier", content=b"chest \xff pain", headers={"content-type": "text/plain"}
    )
    too_long = ("word " * 5000).encode()
    assert "over the limit of 20000" in refusal(
        zoo, "notes_classifier", content=too_long, headers={"content-type": "text/plain"}
    )
    assert refusal(zoo, "notes_classifier", 415, content=b"\x89PNG", headers={"content-type": "image/png"})


# -- vitals_risk ----------------------------------------------------------------------------------

from model_store.build import vitals_series  # noqa: E402

FEATURES = vitals_series.FEATURES


def series_body(series: np.ndarray) -> dict:
    return {"observations": [{name: float(v) for name, v in zip(FEATURES, row, strict=True)} for row in series]}


def test_vitals_auroc_on_fresh_trajectories(zoo: TestClient) -> None:
    from sklearn.metrics import roc_auc_score

    series, labels = vitals_series.generate(300, seed=880011)
    risks = [predict(zoo, "vitals_risk", json=series_body(s))["risk"]["score"] for s in series]
    auroc = float(roc_auc_score(labels, risks))
    assert auroc >= 0.85, auroc
    assert abs(auroc - zoo.app.state.plane.get("vitals_risk").config.card["metrics"]["auroc"]) < 0.06


def test_vitals_news2_beside_the_model(zoo: TestClient) -> None:
    from medfn.tasks import news2

    calm = {
        "heart_rate": 72,
        "respiratory_rate": 14,
        "spo2": 98,
        "systolic_bp": 124,
        "temperature": 36.8,
        "consciousness": "A",
    }
    sick = {
        "heart_rate": 135,
        "respiratory_rate": 27,
        "spo2": 90,
        "systolic_bp": 88,
        "temperature": 39.4,
        "consciousness": "V",
    }
    answer = predict(zoo, "vitals_risk", json={"observations": [calm] * 5 + [sick]})
    expected = news2.assess(news2.Observation(27, 90, 88, 135, 39.4, "V"))
    assert (answer["risk"]["news2"]["score"], answer["risk"]["news2"]["band"]) == expected == (17, "high")
    assert 0.0 <= answer["risk"]["score"] <= 1.0 and answer["label"] == answer["risk"]["band"] in {
        "low",
        "medium",
        "high",
    }
    assert predict(zoo, "vitals_risk", json={"observations": [calm] * 8})["risk"]["news2"]["score"] == 0


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda o: o.update(spo2=101), "spo2 = 101 is outside"),
        (lambda o: o.update(respiratory_rate=-3), "respiratory_rate = -3 is outside"),
        (lambda o: o.update(temperature=98.6), "temperature = 98.6 is outside"),  # Fahrenheit
        (lambda o: o.update(consciousness="Z"), "consciousness must be one of"),
        (lambda o: o.pop("heart_rate"), "missing feature 'heart_rate'"),
    ],
)
def test_vitals_impossible_values_are_422(zoo: TestClient, change, fragment: str) -> None:  # type: ignore[no-untyped-def]
    observation = {
        "heart_rate": 80,
        "respiratory_rate": 16,
        "spo2": 97,
        "systolic_bp": 120,
        "temperature": 37.0,
        "consciousness": "A",
    }
    change(observation)
    assert fragment in refusal(zoo, "vitals_risk", json={"observations": [dict(observation)] * 3})


def test_vitals_length_limits(zoo: TestClient) -> None:
    one = {
        "heart_rate": 80,
        "respiratory_rate": 16,
        "spo2": 97,
        "systolic_bp": 120,
        "temperature": 37.0,
        "consciousness": 0,
    }
    assert "between 1 and 48" in refusal(zoo, "vitals_risk", json={"observations": [one] * 49})
    assert "between 1 and 48" in refusal(zoo, "vitals_risk", json={"observations": []})
    assert predict(zoo, "vitals_risk", json={"observations": [one] * 48})["risk"]["score"] >= 0.0


# -- scan_segmenter -------------------------------------------------------------------------------


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1))


def decode_mask(answer: dict) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["mask_png_base64"])))) > 0


def test_segmenter_dice_on_fresh_ct_phantoms(zoo: TestClient) -> None:
    from model_store.build import ct_phantoms

    hu, masks = ct_phantoms.generate(60, seed=990077)
    scores = []
    for slice_hu, truth in zip(hu, masks, strict=True):
        answer = predict(
            zoo, "scan_segmenter", content=ct_phantoms.to_dicom(slice_hu), headers={"content-type": "application/dicom"}
        )["mask"]
        predicted = decode_mask(answer)
        assert answer["area_px"] == int(predicted.sum())
        if truth.any():
            scores.append(dice(predicted, truth > 0))
    mean_dice = float(np.mean(scores))
    assert mean_dice >= 0.85, mean_dice
    assert abs(mean_dice - zoo.app.state.plane.get("scan_segmenter").config.card["metrics"]["dice"]) < 0.06


def test_segmenter_answer_parts_agree(zoo: TestClient) -> None:
    from model_store.build import ct_phantoms

    hu, masks = ct_phantoms.generate(12, seed=990078)
    index = int(np.argmax(masks.reshape(len(masks), -1).sum(axis=1)))  # the largest lesion
    dicom = ct_phantoms.to_dicom(hu[index], pixel_spacing=(0.5, 0.8))
    answer = predict(zoo, "scan_segmenter", content=dicom, headers={"content-type": "application/dicom"})["mask"]
    mask = decode_mask(answer)
    # the run-length encoding expands to the same mask
    counts, values = answer["rle"]["counts"], []
    for i, count in enumerate(counts):
        values += [i % 2] * count
    np.testing.assert_array_equal(np.asarray(values, dtype=bool).reshape(answer["rle"]["size"]), mask)
    box = answer["bounding_box"]
    ys, xs = np.nonzero(mask)
    assert (box["x_min"], box["y_min"], box["x_max"], box["y_max"]) == (xs.min(), ys.min(), xs.max(), ys.max())
    assert answer["area_mm2"] == pytest.approx(answer["area_px"] * 0.4, rel=1e-6)
    png = zoo.post(
        "/v1/models/scan_segmenter/predict",
        content=dicom,
        headers={"content-type": "application/dicom", "accept": "image/png"},
    )
    assert png.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(decode_mask({"mask_png_base64": base64.b64encode(png.content)}), mask)
    plain = predict(
        zoo,
        "scan_segmenter",
        content=ct_phantoms.to_png(ct_phantoms.window(hu[index])),
        headers={"content-type": "image/png"},
    )["mask"]
    assert plain["area_mm2"] is None and dice(decode_mask(plain), mask) > 0.8  # PNG: no spacing, same lesion


def test_segmenter_refuses_what_it_cannot_read(zoo: TestClient) -> None:
    assert "not a DICOM file" in refusal(
        zoo, "scan_segmenter", content=b"x" * 300, headers={"content-type": "application/dicom"}
    )
    assert "text/plain" in refusal(zoo, "scan_segmenter", 415, content=b"hi", headers={"content-type": "text/plain"})


def test_each_function_answers_through_its_lambda_handler() -> None:
    import importlib.util

    from tests.sources.test_http import Context, decoded_body, http_event

    bodies = {
        "breast_mass": (json.dumps({"records": []}).encode(), "application/json", 422),
        "notes_classifier": (b"Severe headache and facial droop since this morning.", "text/plain", 200),
        "vitals_risk": (
            json.dumps(
                {
                    "observations": [
                        {
                            "heart_rate": 80,
                            "respiratory_rate": 16,
                            "spo2": 97,
                            "systolic_bp": 120,
                            "temperature": 37.0,
                            "consciousness": "A",
                        }
                    ]
                }
            ).encode(),
            "application/json",
            200,
        ),
    }
    for name, (body, content_type, status) in bodies.items():
        spec = importlib.util.spec_from_file_location(f"handler_{name}", Path(REPO, "functions", name, "handler.py"))
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        response = module.handler(
            http_event("apigw_rest", "POST", f"/v1/models/{name}/predict", body, content_type), Context()
        )
        assert response["statusCode"] == status, (name, decoded_body(response))
