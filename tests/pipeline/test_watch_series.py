"""`medfn watch` with a series function (ct_nodule_volume): DICOM instances in any order become
one result set per series, in the source study; nothing lost, nothing answered twice."""

from __future__ import annotations

import io
import json
import logging
import random
import sqlite3
from pathlib import Path
from typing import Any

import highdicom
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.conftest import REPO
from tests.pipeline.series_helpers import PhantomSeries, dice, extra_slice, phantom_series
from tests.pipeline.test_watch import drop, run_watch
from tests.studies.helpers import dciodvfy_errors

FUNCTION = ["--function", "ct_nodule_volume", "--functions", str(REPO / "functions")]


def records(root: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(root / "status.sqlite3")
    rows = db.execute("SELECT record FROM scans WHERE outcome IS NOT NULL").fetchall()
    db.close()
    return [json.loads(row[0]) for row in rows]


def result_dir(root: Path, series: PhantomSeries) -> Path:
    return root / "results" / series.study_uid / series.series_uid


@pytest.fixture(scope="module")
def study() -> tuple[PhantomSeries, PhantomSeries]:
    study_uid = generate_uid()
    return phantom_series(31, 0, study_uid), phantom_series(31, 1, study_uid)


def test_two_interleaved_series_one_result_set_each(
    tmp_path: Path, study: tuple[PhantomSeries, PhantomSeries], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first, second = study
    files = [(f"a{i:03d}.dcm", data) for i, data in enumerate(first.files)]
    files += [(f"b{i:03d}.dcm", data) for i, data in enumerate(second.files)]
    files.append(("copy/of/a005.dcm", first.files[5]))  # a duplicate instance under another name
    files.append(("late/corrupt.dcm", extra_slice(first, corrupt=True)))  # pixels cut short: quarantined
    files.append(("header-only.dcm", first.files[0][:300]))  # not even a header: refused on arrival
    stray = Path(get_testdata_file("CT_small.dcm")).read_bytes()  # another study, one slice
    files.append(("stray.dcm", stray))
    random.Random(7).shuffle(files)
    for index, (key, data) in enumerate(files):
        drop(tmp_path, f"{index:03d}-{key}", data)

    assert run_watch(str(tmp_path), "--once", "--no-progress", *FUNCTION) == 0

    found = records(tmp_path)
    series_records = {r["key"]: r for r in found if "generation" in r}
    for series in study:
        record = series_records.pop(f"{series.study_uid}/{series.series_uid}")
        assert record["outcome"] == "result" and record["generation"] == len(series.files) + (series is first)
        assert record["instances"] == len(series.files)  # the corrupt one left out, the duplicate not counted
        folder = result_dir(tmp_path, series)
        assert sorted(p.name for p in folder.iterdir()) == ["result.json", "seg.dcm", "sr.dcm"]
        check_result_set(folder, series)
    (stray_record,) = series_records.values()  # the stray: its own one-slice series, refused with a reason
    assert stray_record["outcome"] == "error" and "slice" in stray_record["reason"]
    instance_errors = {r["key"].split("-", 1)[1]: r for r in found if "generation" not in r}
    assert set(instance_errors) == {"late/corrupt.dcm", "header-only.dcm"}
    assert all(r["outcome"] == "error" and r["location"] for r in instance_errors.values())
    quarantined = {p.relative_to(tmp_path / "quarantine").as_posix() for p in (tmp_path / "quarantine").rglob("*.dcm")}
    assert {key.split("-", 1)[1] for key in quarantined} == set(instance_errors)
    # Nothing lost: every file is an instance of an answered series, or has its own error record
    left = {p.relative_to(tmp_path / "incoming").as_posix() for p in (tmp_path / "incoming").rglob("*.dcm")}
    assert len(left) == len(files) - len(instance_errors)
    assert (
        "Quillfeather" not in caplog.text and "Phantom^Series" not in caplog.text and "PHANTOM-0007" not in caplog.text
    )


def check_result_set(folder: Path, series: PhantomSeries) -> None:
    result = json.loads((folder / "result.json").read_text())
    seg = pydicom.dcmread(folder / "seg.dcm")
    sr = pydicom.dcmread(folder / "sr.dcm")
    for ds in (seg, sr):  # filed in the source study, each in a new series, valid by dciodvfy
        assert ds.StudyInstanceUID == series.study_uid and ds.SeriesInstanceUID != series.series_uid
        assert dciodvfy_errors(ds) == []
    assert result["dicom"]["seg"]["sop_instance_uid"] == seg.SOPInstanceUID
    # The SEG read back, frame by frame onto its source slices, covers the phantom's nodule
    assert dice(_seg_mask(seg, series), series.truth.labels > 0) >= 0.7
    findings = result["prediction"]["nodules"]["findings"]
    assert len(findings) == len(series.truth.nodules) == 1
    assert _sr_volumes(folder / "sr.dcm") == pytest.approx([f["volume_ml"] for f in findings], rel=1e-6)


def _seg_mask(seg: Any, series: PhantomSeries) -> np.ndarray:
    """The SEG's frames put back on the source slices by their referenced SOP Instance UIDs."""
    order = {pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID: k for k, data in enumerate(series.files)}
    rows, cols = series.truth.labels.shape[1:]
    mask = np.zeros(series.truth.labels.shape, bool)
    pixels = seg.pixel_array.reshape(-1, rows, cols)
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence, strict=True):
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        mask[order[source]] |= frame.astype(bool)
    return mask


def _sr_volumes(path: Path) -> list[float]:
    """Each nodule's volume as the SR states it (TID 1500, one volumetric group per nodule)."""
    from pydicom.sr.codedict import codes

    report = highdicom.sr.srread(path)
    groups = report.content.get_volumetric_roi_measurement_groups()
    return [float(group.get_measurements(name=codes.SCT.Volume)[0].value) for group in groups]


def test_an_enhanced_multi_frame_ct_is_a_series_of_one_file(tmp_path: Path) -> None:
    """One Enhanced CT file holding every slice: answered as its series, the SEG's frames
    referencing the frames of that one source instance."""
    from model_store.build import dicom_series

    series = phantom_series(33, 0, generate_uid())
    options = dicom_series.SeriesOptions(
        spacing_mm=series.truth.spacing_mm, study_uid=series.study_uid, series_uid=series.series_uid
    )
    drop(tmp_path, "enhanced.dcm", dicom_series.enhanced_ct(series.truth.hu, options))
    assert run_watch(str(tmp_path), "--once", "--no-progress", *FUNCTION) == 0
    (record,) = records(tmp_path)
    assert record["outcome"] == "result" and record["instances"] == 1
    seg = pydicom.dcmread(result_dir(tmp_path, series) / "seg.dcm")
    assert dciodvfy_errors(seg) == []
    referenced = {
        item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber
        for item in seg.PerFrameFunctionalGroupsSequence
    }
    nodule_slices = {int(k) + 1 for k in np.flatnonzero(series.truth.labels.any(axis=(1, 2)))}
    assert referenced and len(referenced & nodule_slices) >= len(nodule_slices) - 1
