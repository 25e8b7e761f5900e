"""A DICOM scan's result as a PACS needs it: an SR in the scan's own study beside result.json, valid
by dciodvfy, stating what result.json states; the FHIR report names the study."""

from __future__ import annotations

import io
import json
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.sr.codedict import codes

from model_store.build import chest_phantoms
from tests.conftest import REPO
from tests.pipeline.test_watch import drop, run_watch
from tests.studies.helpers import dciodvfy_errors


def test_a_dicom_scan_gets_an_sr_in_its_study_and_fhir_names_the_study(tmp_path: Path) -> None:
    images, _ = chest_phantoms.generate(2, seed=77)
    scan = chest_phantoms.to_dicom(images[1])  # a source without StudyTime: the SR is filed all the same
    source = pydicom.dcmread(io.BytesIO(scan))
    drop(tmp_path, "ward/a.dcm", scan)
    drop(tmp_path, "ward/b.png", chest_phantoms.to_png(images[0]))
    functions = str(REPO / "functions")
    assert (
        run_watch(
            str(tmp_path),
            "--once",
            "--no-progress",
            "--fhir",
            "--function",
            "scan_classifier",
            "--functions",
            functions,
        )
        == 0
    )

    results = tmp_path / "results" / "ward"
    assert sorted(p.name for p in results.iterdir()) == [
        "a.dcm.fhir.json",
        "a.dcm.json",
        "a.dcm.sr.dcm",
        "b.png.fhir.json",
        "b.png.json",
    ]  # fmt: skip  (a PNG has no study to file an SR in)
    prediction = json.loads((results / "a.dcm.json").read_text())["prediction"]
    sr = pydicom.dcmread(results / "a.dcm.sr.dcm")
    assert dciodvfy_errors(sr) == []
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.SeriesInstanceUID != source.SeriesInstanceUID
    groups = hd.sr.srread(results / "a.dcm.sr.dcm").content.get_image_measurement_groups()
    stated = {g.finding_type.meaning: float(g.get_measurements(name=codes.DCM.Probability)[0].value) for g in groups}
    assert stated == pytest.approx(prediction["probabilities"])
    present = [g.finding_type.meaning for g in groups if g.get_qualitative_evaluations()]
    assert present == [prediction["label"]]

    report = json.loads((results / "a.dcm.fhir.json").read_text())
    (study,) = report["imagingStudy"]
    assert study["identifier"]["value"] == f"urn:oid:{source.StudyInstanceUID}"
    assert "imagingStudy" not in json.loads((results / "b.png.fhir.json").read_text())
