"""Explanations written as files: `medfn predict --explain`, and the scan pipeline with
`explain = true` (a PNG, and for DICOM a Secondary Capture that dciodvfy accepts)."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from medfn.commands import watch as watch_command
from medfn.config import FunctionConfig
from model_store.build import chest_phantoms
from tests.conftest import REPO

DCIODVFY = shutil.which("dciodvfy") or "/usr/bin/dciodvfy"


def test_predict_explain_writes_the_overlay_beside_the_input(tmp_path: Path) -> None:
    images, labels = chest_phantoms.generate(2, seed=6063)
    scan = tmp_path / "chest.png"
    scan.write_bytes(chest_phantoms.to_png(images[1]))
    result = subprocess.run(
        [sys.executable, "-m", "medfn.cli", "predict", "scan_classifier", str(scan), "--explain"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["label"] == chest_phantoms.LABELS[labels[1]]
    details = answer["explanation"]["details"]
    written = tmp_path / "chest.png.explain.png"
    assert details["overlay_png"] == str(written) and "overlay_png_base64" not in details
    assert Image.open(written).size == (128, 128)


def test_function_toml_explain_switch(tmp_path: Path) -> None:
    for table, expected in (("[pipeline]\nexplain = true", True), ("[triggers]\nexplain = true", True), ("", False)):
        (tmp_path / "function.toml").write_text(f'name = "f"\nmodel = "m"\n{table}\n')
        assert FunctionConfig.load(tmp_path).explain is expected


def _watch(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    watch_command.add_arguments(parser)
    return watch_command.run(parser.parse_args(list(argv)))


@pytest.mark.skipif(not Path(DCIODVFY).exists(), reason="dciodvfy (dicom3tools) is not installed")
def test_pipeline_writes_the_overlay_and_a_secondary_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    functions = tmp_path / "functions" / "scan_classifier"
    functions.mkdir(parents=True)
    toml = (REPO / "functions" / "scan_classifier" / "function.toml").read_text()
    (functions / "function.toml").write_text(toml + "\n[pipeline]\nexplain = true\n")
    shutil.copy(REPO / "functions" / "scan_classifier" / "handler.py", functions / "handler.py")
    monkeypatch.setenv("MEDFN_MODEL_STORE", str(REPO / "model_store"))
    images, _ = chest_phantoms.generate(2, seed=6064)
    root = tmp_path / "scans"
    (root / "incoming").mkdir(parents=True)
    source = chest_phantoms.to_dicom(images[1], patient_name="Smith^Alice", patient_id="PID-31337")
    (root / "incoming" / "chest.dcm").write_bytes(source)
    (root / "incoming" / "chest.png").write_bytes(chest_phantoms.to_png(images[0]))
    assert _watch(str(root), "--once", "--function", "scan_classifier", "--functions", str(tmp_path / "functions")) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["results"] == 2

    results = root / "results"
    assert Image.open(results / "chest.png.explain.png").mode == "RGB"
    assert not (results / "chest.png.explain.dcm").exists()  # a PNG has no study to file it in
    document = json.loads((results / "chest.dcm.json").read_text())
    assert document["prediction"]["explanation"]["method"] == "grad-cam"
    assert "overlay_png_base64" not in document["prediction"]["explanation"]["details"]

    capture = pydicom.dcmread(results / "chest.dcm.explain.dcm")
    original = pydicom.dcmread(io.BytesIO(source))
    assert capture.StudyInstanceUID == original.StudyInstanceUID
    assert capture.SeriesInstanceUID != original.SeriesInstanceUID
    assert capture.SourceImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    assert capture.PhotometricInterpretation == "RGB" and capture.pixel_array.shape == (128, 128, 3)
    png = np.asarray(Image.open(results / "chest.dcm.explain.png").convert("RGB"))
    assert np.array_equal(capture.pixel_array, png)
    checked = subprocess.run([DCIODVFY, str(results / "chest.dcm.explain.dcm")], capture_output=True, text=True)
    errors = [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")]
    assert errors == []


def test_the_secondary_capture_keeps_its_uids_when_written_again() -> None:
    from medfn.explain.overlay import overlay_png
    from medfn.studies.secondary_capture import explanation_capture
    from medfn.studies.writing import read_dataset

    image = chest_phantoms.generate(2, seed=6066)[0][1]
    source = read_dataset(chest_phantoms.to_dicom(image))
    png = overlay_png(image, np.clip(image - 0.5, 0, 1))

    def capture(seed: str) -> pydicom.Dataset:
        return explanation_capture(source, png, method="grad-cam", model_name="m", model_version=1, uid_seed=seed)

    first, again, other = capture("s3://b/k#1"), capture("s3://b/k#1"), capture("s3://b/k#2")
    assert (first.SOPInstanceUID, first.SeriesInstanceUID) == (again.SOPInstanceUID, again.SeriesInstanceUID)
    assert other.SOPInstanceUID != first.SOPInstanceUID and first.SOPInstanceUID != source.SOPInstanceUID
    assert "Doe" not in str(first.SeriesDescription) and first.PatientName == source.PatientName  # filed, not quoted
