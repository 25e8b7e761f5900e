"""ct_nodule_volume through the Model API, on phantom series of a seed it never trained on: the
label map's Dice, each nodule's volume and diameter against the truth, the refusals it promises,
its chunks, and the Open Inference Protocol routes that serve it as any model."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from medfn.config import FunctionConfig
from medfn.errors import UnprocessableInput
from medfn.function import check_models, load_models
from medfn.http import create_app
from medfn.serving import InferencePlane, LocalStore, Model, Payload, Prediction, server_runner
from medfn.tasks.volume_segmentation import context_stack, resample_matrix, resample_slices
from model_store.build import ct_series_phantoms as phantoms
from model_store.build.ct_series_phantoms import Series
from tests.conftest import REPO
from tests.serving.test_graph_checks import mistaken_store

MODEL = "ct_nodule_volume"
SEED = 737_373  # neither the training seed (1) nor the card's held-out one (2)
HELD_OUT = 6


def scanner(index: int) -> dict[str, Any]:
    """Slabs of about 80 mm as scanners make them: 0.6-1.0 mm pixels over the chest, 1-5 mm slices."""
    rng = np.random.default_rng((SEED, index, 1))
    spacing = float(rng.uniform(0.6, 1.0))
    dz = float(rng.choice(phantoms.SLICE_SPACINGS_MM))
    matrix = int(min(512, round(rng.uniform(330.0, 380.0) / spacing)))
    return dict(rows=matrix, cols=matrix, pixel_spacing=(spacing, spacing), slice_spacing=dz, slices=int(80 / dz) + 1)


def payload(series: Series) -> Payload:
    return Payload(b"", "application/dicom", volume=phantoms.volume(series))


@pytest.fixture(scope="module")
def model() -> Model:
    memory_mb = FunctionConfig.load(REPO / "functions" / MODEL).memory_mb
    (loaded,) = load_models(LocalStore(REPO / "model_store"), MODEL, memory_mb)
    assert loaded.ready, loaded.reason
    return loaded


@pytest.fixture(scope="module")
def answers(model: Model) -> list[tuple[Series, Prediction]]:
    held_out = [phantoms.generate(SEED, i, **scanner(i)) for i in range(HELD_OUT)]
    assert sum(len(s.nodules) for s in held_out) >= 4
    return [(series, model.predict(payload(series))) for series in held_out]


def matches(series: Series, prediction: Prediction) -> list[tuple[Any, dict[str, Any] | None]]:
    """Each true nodule with the finding of the mask's component that overlaps it most (None: missed)."""
    from scipy import ndimage

    assert prediction.mask is not None
    components, count = ndimage.label(prediction.mask, structure=np.ones((3, 3, 3), bool))
    pairs: list[tuple[Any, dict[str, Any] | None]] = []
    for nodule in series.nodules:
        overlap = np.bincount(components[series.labels == nodule.label], minlength=count + 1)[1:]
        if not overlap.any():
            pairs.append((nodule, None))
            continue
        component = components == int(np.argmax(overlap)) + 1
        where = np.flatnonzero(component.any(axis=(1, 2)))
        voxel_ml = float(np.prod(series.spacing_mm)) / 1000
        (finding,) = (
            f
            for f in prediction.details["findings"]
            if f["slice_range"] == [where[0], where[-1]]
            and f["volume_ml"] == pytest.approx(component.sum() * voxel_ml, abs=1e-4)
        )
        pairs.append((nodule, finding))
    return pairs


def test_dice_and_volumes_on_series_it_never_saw(answers: list[tuple[Series, Prediction]], model: Model) -> None:
    dices, errors = [], []
    for series, prediction in answers:
        assert prediction.mask is not None
        mask, truth = prediction.mask > 0, series.labels > 0
        if truth.any():
            dices.append(2 * (mask & truth).sum() / (mask.sum() + truth.sum()))
        for nodule, finding in matches(series, prediction):
            errors.append(1.0 if finding is None else abs(finding["volume_ml"] - nodule.volume_ml) / nodule.volume_ml)
    dice, error = float(np.mean(dices)), float(np.median(errors))
    assert dice >= 0.85, dices
    assert error <= 0.15, errors
    card = model.config.card["metrics"]
    assert abs(dice - card["dice"]) < 0.1 and error <= card["median_volume_error"] + 0.1


def test_each_finding_measures_its_nodule(answers: list[tuple[Series, Prediction]]) -> None:
    measured = 0
    for series, prediction in answers:
        for nodule, finding in matches(series, prediction):
            if finding is None:
                continue
            measured += 1
            truth = nodule.longest_axial_diameter_mm
            assert finding["longest_axial_diameter_mm"] == pytest.approx(truth, abs=max(2.0, 0.15 * truth)), nodule
            first, last = finding["slice_range"]
            assert abs(first - nodule.slice_range[0]) <= 1 and abs(last - nodule.slice_range[1]) <= 1
            k, r, c = finding["centroid_voxel"]
            assert abs(k - nodule.center_voxel[0]) <= 1.0
            assert np.hypot(r - nodule.center_voxel[1], c - nodule.center_voxel[2]) <= 2.0 / series.spacing_mm[1] + 1
            assert 0.5 <= finding["mean_probability"] <= finding["max_probability"] <= 1.0
    assert measured >= 4


def test_the_mask_lies_on_the_series_grid(answers: list[tuple[Series, Prediction]], model: Model) -> None:
    for series, prediction in answers:
        assert prediction.mask is not None
        assert prediction.mask.shape == series.hu.shape and prediction.mask.dtype == np.uint8
        assert set(np.unique(prediction.mask)) <= {0, 1}
        findings = prediction.details["findings"]
        assert prediction.label == ("nodule" if findings else "none")
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0)
        assert prediction.details["shape"] == list(series.hu.shape)
        assert prediction.details["voxel_spacing_mm"] == pytest.approx(list(series.spacing_mm))
        voxel_ml = float(np.prod(series.spacing_mm)) / 1000
        assert sum(f["volume_ml"] for f in findings) == pytest.approx(prediction.mask.sum() * voxel_ml, rel=1e-3)
        answer = prediction.answer(model, "r-1")
        assert answer["nodules"]["findings"] == findings and answer["notice"].startswith("demonstration model")


def test_a_series_without_nodules_answers_none(model: Model) -> None:
    series = phantoms.generate(SEED, 100, **{**scanner(100), "nodules": 0})
    assert not series.nodules
    prediction = model.predict(payload(series))
    assert prediction.label == "none" and prediction.details["findings"] == []
    assert prediction.mask is not None and not prediction.mask.any()
    assert prediction.probabilities["nodule"] < 0.5


def test_slices_run_in_chunks_of_at_most_max_batch_size(model: Model, monkeypatch: pytest.MonkeyPatch) -> None:
    series = phantoms.generate(SEED, 101, rows=128, cols=128, pixel_spacing=(2.6, 2.6), slices=21, slice_spacing=2.5)
    rows: list[int] = []
    run = model.run

    def counting(inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        rows.append(len(inputs["slices"]))
        return run(inputs, outputs)

    monkeypatch.setattr(model, "run", counting)
    model.predict(payload(series))
    assert sum(rows) == 21 and max(rows) <= model.config.max_batch_size and len(rows) > 1


def test_one_slice_is_refused_with_its_reason(model: Model) -> None:
    series = phantoms.generate(SEED, 102, rows=128, cols=128, pixel_spacing=(2.6, 2.6), slices=6, slice_spacing=2.5)
    one = Series(series.hu[:1], series.labels[:1], series.spacing_mm, [])
    with pytest.raises(UnprocessableInput, match="ct_nodule_volume needs a series of at least 5 slices; got 1"):
        model.predict(payload(one))


def test_a_series_over_the_memory_budget_is_refused_before_any_work() -> None:
    (small,) = load_models(LocalStore(REPO / "model_store"), MODEL, memory_mb=64)  # a 32 MiB budget
    series = phantoms.generate(SEED, 103, rows=384, cols=384, pixel_spacing=(0.9, 0.9), slices=30, slice_spacing=2.5)
    with pytest.raises(UnprocessableInput, match=r"30x384x384 voxels needs about \d+ MiB .* budget of 32 MiB"):
        small.predict(payload(series))


def test_a_request_without_a_series_is_refused(model: Model) -> None:
    with pytest.raises(UnprocessableInput, match="answers about a CT series"):
        model.predict(Payload(b"\x89PNG\r\n\x1a\n", "image/png"))


def test_what_lies_outside_the_training_data_comes_with_warnings(model: Model) -> None:
    series = phantoms.generate(SEED, 104, rows=96, cols=96, pixel_spacing=(3.6, 3.6), slices=8, slice_spacing=5.0)
    volume = dataclasses.replace(phantoms.volume(series), spacing_mm=(8.0, 3.6, 3.6))
    warnings = model.predict(Payload(b"", "application/dicom", volume=volume)).warnings
    assert any("coarser than the 1.25 mm" in w for w in warnings), warnings
    assert any("slice spacing 8 mm lies outside the 1-5 mm" in w for w in warnings), warnings
    assert any("unevenly spaced" in w for w in warnings), warnings  # positions 5 mm apart, spacing says 8


def test_tensors_through_the_open_inference_protocol(model: Model) -> None:
    plane = InferencePlane(runner=server_runner())
    plane.add(MODEL, [model])
    client = TestClient(create_app(plane), raise_server_exceptions=False)
    assert client.get(f"/v2/models/{MODEL}/ready").status_code == 200
    data = np.random.default_rng(0).random((1, 5, 40, 36)).ravel().tolist()
    body = {"inputs": [{"name": "slices", "datatype": "FP32", "shape": [1, 5, 40, 36], "data": data}]}
    response = client.post(f"/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["shape"] == [1, 1, 40, 36] and 0.0 <= min(output["data"]) <= max(output["data"]) <= 1.0
    tiny = {"inputs": [{"name": "slices", "datatype": "FP32", "shape": [1, 5, 8, 8], "data": [0.0] * 320}]}
    assert client.post(f"/v2/models/{MODEL}/infer", json=tiny).status_code == 400
    refused = client.post(f"/v1/models/{MODEL}/predict", content=b"\x89PNG", headers={"content-type": "image/png"})
    assert refused.status_code == 422 and "answers about a CT series" in refused.json()["error"]


def test_medfn_check_passes_the_shipped_model_and_names_a_wrong_setting(tmp_path: Any) -> None:
    assert check_models(REPO / "model_store", [MODEL]) == []
    context = "context_mm = [-6.0, -3.0, 0.0, 3.0, 6.0]"
    (wrong,) = load_models(mistaken_store(tmp_path, MODEL, context, "context_mm = [-3.0, 0.0, 3.0]"), MODEL)
    assert not wrong.ready and "context_mm has 3 slices; input 'slices' takes 5" in wrong.reason
    (unknown,) = load_models(mistaken_store(tmp_path / "b", MODEL, context, context + "\nspacing = 1.0"), MODEL)
    assert not unknown.ready and "[preprocessing] spacing is not a volume_segmentation setting" in unknown.reason


# -- the preprocessing the training script imports -------------------------------------------------


def test_shrinking_averages_the_area_and_enlarging_interpolates() -> None:
    weights = resample_matrix(6, 3)
    assert np.allclose(weights, np.kron(np.eye(3), [[0.5, 0.5]]))
    assert np.allclose(resample_matrix(5, 2).sum(axis=1), 1.0)
    ramp = np.arange(4, dtype=np.float32)[None, None, :].repeat(4, axis=1)
    enlarged = resample_slices(ramp, (8, 8))
    assert np.allclose(enlarged[0, 0], [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])  # centres aligned, ends held


def test_context_is_read_at_fixed_millimetres_whatever_the_slice_spacing() -> None:
    for spacing in (1.0, 2.5, 5.0):
        z = np.arange(40) * spacing  # each slice holds its own position in mm
        grid = np.broadcast_to(z[:, None, None], (40, 2, 2)).astype(np.float32)
        stack = context_stack(grid, spacing, [-6.0, -3.0, 0.0, 3.0, 6.0], np.array([20]))
        assert np.allclose(stack[0, :, 0, 0], z[20] + np.array([-6.0, -3.0, 0.0, 3.0, 6.0]))
        first = context_stack(grid, spacing, [-6.0, 0.0, 6.0], np.array([0]))
        assert np.allclose(first[0, :, 0, 0], [0.0, 0.0, 6.0])  # beyond the first slice: the first slice
