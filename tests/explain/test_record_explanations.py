"""Records and vital-sign series explained by baseline replacement (medfn.tasks.records): a part's
weight is how much replacing it by its training median ([explain] baseline in model.toml, written
by model_store/build/baselines.py) lowers the answered class's probability, or the risk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from medfn.errors import BadRequest
from medfn.function import check_models, load_models
from medfn.serving import LocalStore, Model, Payload
from medfn.tasks import news2
from model_store.build import baselines, model_toml, vitals_series
from model_store.build.breast_cancer_data import split
from tests.conftest import REPO
from tests.serving.test_graph_checks import copied_store

FRESH_SEED = 135791  # vital-sign series never used to train, select or test anything else


def served(name: str) -> Model:
    (model,) = load_models(LocalStore(REPO / "model_store"), name)
    model.ensure_ready()
    return model


@pytest.fixture(scope="module")
def breast_mass() -> Model:
    return served("breast_mass")


@pytest.fixture(scope="module")
def vitals() -> Model:
    return served("vitals_risk")


def record(names: list[str], row: np.ndarray) -> bytes:
    return json.dumps(dict(zip(names, map(float, row), strict=True))).encode()


def series_body(rows: np.ndarray) -> bytes:
    return json.dumps(
        {"observations": [dict(zip(vitals_series.FEATURES, map(float, r), strict=True)) for r in rows]}
    ).encode()


def test_wdbc_attributions_point_where_the_graph_itself_does(breast_mass: Model) -> None:
    """For each held-out malignant case, the five features the explanation weighs most are compared
    with the five that the ONNX graph's own first-order expansion says decide the answer:
    gradient x (value - baseline), the gradient of the answered class's log-odds taken by
    central finite differences (a step of 1% of the feature's training spread) on the graph run
    by onnxruntime directly, not through medfn. A linear model's log-odds change by exactly that
    much when a feature goes to its baseline; for this MLP it is the first-order estimate, so the
    two rankings agree where the model is close to linear between the case and the baseline, and
    an explanation that weighed features by anything else (the wrong class, a shifted column, the
    input's magnitude) would not. In the log-odds, a saturated probability (0.9999...) keeps its
    gradient, and a drop in probability ranks features as the drop in log-odds does (binary).
    Agreement: at least 3 of the top 5 shared in >= 80% of the cases (measured: every one of the
    53, at least 4 of 5, 5 of 5 in 49 of 51 answered malignant)."""
    x_train, x_test, _, y_test, names = split()
    baseline = np.asarray(breast_mass.config.explain["baseline"], dtype=np.float64)
    session = ort.InferenceSession(
        str(REPO / "model_store/breast_mass/1/model.onnx"), providers=["CPUExecutionProvider"]
    )
    step = 0.01 * x_train.std(axis=0).astype(np.float64)
    agreeing, cases = 0, 0
    for x in x_test[y_test == 1]:
        explanation = breast_mass.explain(Payload(record(names, x), "application/json"))
        target = 1 if explanation.details["target"] == "malignant" else 0
        nudged = np.repeat(x[None].astype(np.float64), 2 * len(names), axis=0)
        nudged[2 * np.arange(len(names)), np.arange(len(names))] += step
        nudged[2 * np.arange(len(names)) + 1, np.arange(len(names))] -= step
        p = session.run(None, {"features": nudged.astype(np.float32)})[0].astype(np.float64)
        log_odds = np.log(p[:, target]) - np.log(p[:, 1 - target])
        expected = (log_odds[0::2] - log_odds[1::2]) / (2 * step) * (x - baseline)
        weights = {f["name"]: f["weight"] for f in explanation.details["features"]}
        ours = np.asarray([weights[name] for name in names])
        shared = set(np.argsort(-ours)[:5]) & set(np.argsort(-expected)[:5])
        agreeing += len(shared) >= 3
        cases += 1
    assert cases == int((y_test == 1).sum()) >= 50
    assert agreeing / cases >= 0.8, f"{agreeing} of {cases}"


def test_record_weights_are_predictions_with_one_feature_at_its_baseline(breast_mass: Model) -> None:
    _, x_test, _, _, names = split()
    explanation = breast_mass.explain(Payload(record(names, x_test[3]), "application/json"))
    features = explanation.details["features"]
    assert explanation.method == "baseline-replacement" and len(features) == len(names)
    assert [abs(f["weight"]) for f in features] == sorted((abs(f["weight"]) for f in features), reverse=True)
    label = explanation.details["target"]
    assert label == explanation.prediction.label
    predicted = breast_mass.predict(Payload(record(names, x_test[3]), "application/json"))
    assert explanation.prediction.probabilities == pytest.approx(predicted.probabilities, abs=1e-7)
    for feature in features[:3] + features[-2:]:
        i = names.index(feature["name"])
        assert feature["value"] == pytest.approx(float(x_test[3][i]), rel=1e-6)
        changed = x_test[3].astype(np.float64).copy()
        changed[i] = feature["baseline"]
        other = breast_mass.predict(Payload(record(names, changed), "application/json")).probabilities
        dropped = sum(p for name, p in other.items() if name != label) - sum(
            p for name, p in predicted.probabilities.items() if name != label
        )
        assert feature["weight"] == pytest.approx(dropped, rel=1e-3, abs=1e-9), feature["name"]


def stable(rows: np.ndarray) -> bool:
    """NEWS2 of at most 2 at every observation, alert throughout: nothing to explain but what we inject."""
    for r in rows:
        score, _ = news2.assess(
            news2.Observation(
                respiratory_rate=float(r[1]), spo2=float(r[2]), systolic_bp=float(r[3]), heart_rate=float(r[0]),
                temperature=float(r[4]), consciousness="A" if r[5] == 0 else "C", on_oxygen=False,
            )
        )  # fmt: skip
        if score > 2 or r[5] != 0:
            return False
    return True


def test_an_injected_low_spo2_gets_the_largest_weight(vitals: Model) -> None:
    """Stable held-out patients, SpO2 set to 78% for their last three hours: the model's risk
    rises, and its explanation puts SpO2 first among the features, the largest single value
    weight on an injected one, and the largest step weight on an injected hour (measured on
    seed 135791's 300 series: 110 stable, 110, 110 and 104 of them)."""
    spo2 = vitals_series.FEATURES.index("spo2")
    series, _ = vitals_series.generate(300, FRESH_SEED)
    found = {"risen": 0, "feature": 0, "value": 0, "step": 0}
    cases = 0
    for rows in (s for s in series if len(s) >= 6 and stable(s)):
        rows = rows.copy()
        rows[-3:, spo2] = 78.0
        explanation = vitals.explain(Payload(series_body(rows), "application/json"))
        steps = explanation.details["steps"]
        values = [(w, st["step"], name) for st in steps for name, w in st["features"].items()]
        _, at, name = max(values)
        found["risen"] += explanation.prediction.probabilities["deteriorating"] >= 0.5
        found["feature"] += explanation.details["features"][0]["name"] == "spo2"
        found["value"] += name == "spo2" and at >= len(rows) - 3
        found["step"] += max(steps, key=lambda st: st["weight"])["step"] >= len(rows) - 3
        cases += 1
    assert cases >= 100, cases
    assert found["risen"] / cases >= 0.95, found
    assert found["feature"] / cases >= 0.95 and found["value"] / cases >= 0.95, found
    assert found["step"] / cases >= 0.9, found


def test_series_weights_add_up_to_what_the_last_hours_carry(vitals: Model) -> None:
    """Steps restored from the latest back: the step weights sum to the risk less the risk of the
    baseline series, each feature's to its own weight (replaced at every step)."""
    rows = next(s for s in vitals_series.generate(40, FRESH_SEED + 1)[0] if len(s) >= 12)
    explanation = vitals.explain(Payload(series_body(rows), "application/json"))
    risk = explanation.prediction.probabilities["deteriorating"]
    baseline = np.asarray(vitals.config.explain["baseline"])
    typical = vitals.predict(Payload(series_body(np.repeat(baseline[None], len(rows), 0)), "application/json"))
    steps = explanation.details["steps"]
    assert [st["step"] for st in steps] == list(range(len(rows)))
    assert sum(st["weight"] for st in steps) == pytest.approx(risk - typical.probabilities["deteriorating"], abs=1e-4)
    for feature in explanation.details["features"]:
        assert sum(st["features"][feature["name"]] for st in steps) == pytest.approx(feature["weight"], abs=1e-4)
        assert feature["value"] == pytest.approx(
            float(rows[-1][vitals_series.FEATURES.index(feature["name"])]), rel=1e-6
        )
    assert explanation.details["variants"] == len(rows) * (len(vitals_series.FEATURES) + 1)
    assert explanation.details["runs"] == 1


@pytest.mark.parametrize("model", sorted(baselines.BASELINES))
def test_model_toml_carries_the_baselines_its_training_data_gives(model: str) -> None:
    text = (REPO / "model_store" / model / "model.toml").read_text()
    assert "\n\n" + model_toml.render(baselines.BASELINES[model]()) + "\n[guards" in text


def with_explain(root: Path, model: str, table: str | None) -> LocalStore:
    """A copy of a reference model whose [explain] section holds `table` instead (None: no section)."""
    store = copied_store(root, model)
    toml = root / model / "model.toml"
    head, rest = toml.read_text().split("[explain]\n", 1)
    tail = rest.split("\n\n[", 1)[1]
    toml.write_text(head + ("" if table is None else f"[explain]\n{table}\n\n") + "[" + tail)
    return store


@pytest.mark.parametrize(
    ("model", "table", "reason"),
    [
        ("breast_mass", "baseline = [1.0, 2.0]", "[explain] baseline has 2 values; [preprocessing] names 30 features"),
        ("vitals_risk", 'baseline = [81.0, 17.0, 97.0, 122.0, 36.8, "alert"]', "one finite number per feature"),
        ("vitals_risk", "baseline = [81.0, 17.0, 97.0, 122.0, 36.8, 0.0]\nbatch = -1", "[explain] batch must be"),
        ("breast_mass", "baselines = [1.0]", "[explain] baselines is not a tabular_classification setting"),
    ],
)
def test_medfn_check_reports_a_bad_explain_section(tmp_path: Path, model: str, table: str, reason: str) -> None:
    with_explain(tmp_path, model, table)
    problems = check_models(tmp_path, [model])
    assert any(reason in line for line in problems), problems


def test_a_model_without_a_baseline_serves_but_cannot_explain(tmp_path: Path) -> None:
    (model,) = load_models(with_explain(tmp_path, "breast_mass", None), "breast_mass")
    assert model.ready, model.reason
    _, x_test, _, _, names = split()
    with pytest.raises(BadRequest, match="cannot explain"):
        model.explain(Payload(record(names, x_test[0]), "application/json"))


def test_explain_routes(gateway_client: TestClient) -> None:
    _, x_test, _, _, names = split()
    one = gateway_client.post("/v1/models/breast_mass/explain", content=record(names, x_test[0]),
                              headers={"content-type": "application/json"})  # fmt: skip
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["explanation"]["method"] == "baseline-replacement"
    assert {f["name"] for f in body["explanation"]["details"]["features"]} == set(names)
    two = {"records": [dict(zip(names, map(float, row), strict=True)) for row in x_test[:2]]}
    refused = gateway_client.post("/v1/models/breast_mass/explain", json=two)
    assert refused.status_code == 422 and "one record" in refused.json()["error"]
    rows = np.repeat(np.asarray([[80, 16, 97, 120, 37.0, 0]], dtype=np.float64), 12, axis=0)
    rows[-2:, 2] = 82
    series = gateway_client.post("/v1/models/vitals_risk/explain", content=series_body(rows),
                                 headers={"content-type": "application/json"})  # fmt: skip
    assert series.status_code == 200, series.text
    answer = series.json()
    assert answer["risk"]["news2"]["score"] >= 3  # the prediction's own details are kept
    details = answer["explanation"]["details"]
    assert details["features"][0]["name"] == "spo2" and len(details["steps"]) == 12
