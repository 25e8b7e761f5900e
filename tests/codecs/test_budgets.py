"""Tiny requests that would take gigabytes are refused from their headers, and a DICOM header's
values never reach a log line, a warning or an error: each bomb and each leak under a test."""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless

from model_store.build import chest_phantoms, dicom_part10
from tests.conftest import REPO
from tests.pipeline.test_watch import drop, run_watch

FAKE_MRN = "MRN0042DOE"
STAND_IN = "9999999999"  # as long as FAKE_MRN


def post(client: TestClient, model: str, body: bytes, media_type: str) -> tuple[int, str]:
    answer = client.post(f"/v1/models/{model}/predict", content=body, headers={"content-type": media_type})
    return answer.status_code, answer.json().get("error", "")


def test_a_deflated_dicom_is_refused_before_it_is_inflated(gateway_client: TestClient) -> None:
    body = dicom_part10.around(np.zeros((4000, 4000), np.uint16), DeflatedExplicitVRLittleEndian)
    assert len(body) < 200_000  # 32 MB of pixels in a few kilobytes
    status, error = post(gateway_client, "scan_classifier", body, "application/dicom")
    assert status == 415 and "Deflated" in error


def test_a_palette_png_bomb_is_refused_from_its_header(gateway_client: TestClient) -> None:
    image = Image.new("P", (8000, 8000))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    assert len(buffer.getvalue()) < 100_000
    status, error = post(gateway_client, "scan_classifier", buffer.getvalue(), "image/png")
    assert status == 422 and "8000x8000 pixels x 3 samples" in error and "budget of 512 MiB" in error


def test_an_rle_rgb_dicom_bomb_is_refused_from_its_header(gateway_client: TestClient) -> None:
    body = dicom_part10.around(np.zeros((4000, 4000, 3), np.uint8), RLELossless, rgb=True)
    assert len(body) < 3_000_000
    status, error = post(gateway_client, "scan_classifier", body, "application/dicom")
    assert status == 422 and "4000x4000 pixels x 3 samples" in error


def test_oip_dims_are_capped_by_model_toml(gateway_client: TestClient) -> None:
    tokens = {"inputs": [{"name": "tokens", "datatype": "INT64", "shape": [1, 100_000], "data": [2] * 100_000}]}
    answer = gateway_client.post("/v2/models/notes_classifier/infer", json=tokens)
    assert answer.status_code == 400 and "at most 128 tokens" in answer.json()["error"]
    steps = {"inputs": [{"name": "vitals", "datatype": "FP32", "shape": [1, 1000, 6], "data": [1.0] * 6000}]}
    answer = gateway_client.post("/v2/models/vitals_risk/infer", json=steps)
    assert answer.status_code == 400 and "at most 48 observations" in answer.json()["error"]
    images = {
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [17, 1, 128, 128], "data": [0.0] * (17 * 128 * 128)}]
    }
    answer = gateway_client.post("/v2/models/scan_segmenter/infer", json=images)
    assert answer.status_code == 400 and "at most 16" in answer.json()["error"]


def header_of_fake_mrns() -> bytes:
    """A radiograph whose every text value, and every number kept as text, is a fake MRN.

    pydicom will not write a number that is not one, so those get a 10-digit stand-in that the
    file's bytes then swap for the MRN (the same length: no element length changes)."""
    ds = pydicom.dcmread(io.BytesIO(chest_phantoms.to_dicom(chest_phantoms.generate(1, seed=5)[0][0])))
    kept = ("PhotometricInterpretation", "Modality")
    for element in ds.iterall():
        if element.keyword in kept:
            continue
        if element.VR in ("PN", "LO", "SH", "CS", "DA", "TM", "ST", "LT"):
            element.value = FAKE_MRN
        elif element.VR in ("IS", "DS"):
            element.value = [STAND_IN] * element.VM if element.VM > 1 else STAND_IN
    ds.NumberOfFrames = STAND_IN
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue().replace(STAND_IN.encode(), FAKE_MRN.encode())


def test_header_values_never_reach_an_answer_a_log_or_a_warning(
    gateway_client: TestClient, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        status, error = post(gateway_client, "scan_classifier", header_of_fake_mrns(), "application/dicom")
    assert status == 422, error
    out, err = capsys.readouterr()
    for text in (error, caplog.text, out, err, *(str(w.message) for w in seen)):
        assert FAKE_MRN not in text


def test_in_the_pipeline_such_a_header_is_quarantined_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    drop(tmp_path, "mrn.dcm", header_of_fake_mrns())
    functions = str(REPO / "functions")
    assert run_watch(str(tmp_path), "--once", "--function", "scan_classifier", "--functions", functions, "-v") == 0
    out, err = capsys.readouterr()
    assert json.loads(out.splitlines()[-1])["errors"] == 1  # poison: quarantined, not retried
    reason = (tmp_path / "quarantine").rglob("*.reason.json")
    for text in (caplog.text, out, err, *(p.read_text() for p in reason)):
        assert FAKE_MRN not in text
