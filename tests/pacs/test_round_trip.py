"""The whole way round, against a real Orthanc: a study leaves the PACS (STOW-RS, or C-STORE as a
modality would), medfn's series pipeline answers it with ct_nodule_volume, and the SEG and SR
arrive back in the PACS in the same study. Sent again: no second pair. The PACS down when the
results are ready: they arrive once it is back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from medfn.dicomweb.delivery import RetryPolicy
from medfn.dicomweb.destination import CStoreDestination, DicomwebDestination, ResultDestination
from medfn.dicomweb.listen import StoreListener
from medfn.dicomweb.sinks import FolderSink
from medfn.function import load_function
from medfn.http import create_app
from medfn.pipeline.local import LocalPipeline, open_local_pipeline
from medfn.pipeline.settings import PipelineSettings
from medfn.serving import InferencePlane
from tests.conftest import REPO, free_port, serve_in_thread
from tests.pacs.conftest import Orthanc, run_orthanc
from tests.pipeline.series_helpers import PhantomSeries, phantom_series

ONE_TRY = RetryPolicy(attempts=1)


@pytest.fixture(scope="module")
def function():  # type: ignore[no-untyped-def]
    return load_function(REPO / "functions" / "ct_nodule_volume")


@contextmanager
def pipeline(root: Path, function, destination: ResultDestination, once: bool) -> Iterator[LocalPipeline]:  # type: ignore[no-untyped-def]
    local = open_local_pipeline(
        root, function, PipelineSettings(), destination=destination, settle_s=0.0, progress=False, once=once
    )
    local.watch.worker.series.retry_s = 0.5  # type: ignore[union-attr]
    try:
        yield local
    finally:
        local.close()


def modalities_in(orthanc: Orthanc, study_uid: str) -> list[str]:
    answer = httpx.get(f"{orthanc.url}/dicom-web/studies/{study_uid}/series", timeout=30)
    return sorted(item["00080060"]["Value"][0] for item in answer.json()) if answer.content else []


def upload_and_send(orthanc: Orthanc, series: PhantomSeries, how: str) -> None:
    """Store the series in Orthanc, then have Orthanc send it to medfn. The series, not the study:
    once medfn's SEG and SR are in the study, a study-wide send offers them back, and medfn refuses
    what is not an image (docs/pacs.md), which Orthanc reports as a failed job."""
    orthanc_series = ""
    for data in series.files:
        answer = httpx.post(f"{orthanc.url}/instances", content=data, timeout=30)
        answer.raise_for_status()
        orthanc_series = answer.json()["ParentSeries"]
    path = "/dicom-web/servers/medfn/stow" if how == "stow" else "/modalities/medfn/store"
    answer = orthanc.post(path, {"Resources": [orthanc_series], "Synchronous": True}, timeout=120)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("how", ["stow", "c-store"])
def test_a_study_goes_round_and_a_second_send_adds_nothing(tmp_path: Path, function, how: str) -> None:  # type: ignore[no-untyped-def]
    inbox = tmp_path / "medfn"
    listener = StoreListener(FolderSink(inbox), ae_title="MEDFN", port=free_port())
    listener.start()
    app = create_app(InferencePlane(), dicomweb_sink=FolderSink(inbox), metrics_route=False)
    series = phantom_series(51, 0, generate_uid())
    try:
        with (
            serve_in_thread(app) as base,
            run_orthanc(
                tmp_path / "orthanc", http_port=free_port(), stow_url=f"{base}/dicomweb", listen_port=listener.port
            ) as orthanc,
        ):
            destination: ResultDestination = (
                DicomwebDestination(f"{orthanc.url}/dicom-web", retry=ONE_TRY)
                if how == "stow"
                else CStoreDestination.parse(f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", retry=ONE_TRY)
            )
            for _ in range(2):  # the second time: the same study sent again
                upload_and_send(orthanc, series, how)
                with pipeline(inbox, function, destination, once=True) as local:
                    summary = local.watch.run(once=True)
                assert not summary.transient and summary.errors == 0
                assert modalities_in(orthanc, series.study_uid) == ["CT", "SEG", "SR"]
                assert len(orthanc.instances_of_study(series.study_uid)) == len(series.files) + 2
    finally:
        listener.stop()


def test_results_wait_for_a_pacs_that_is_down(tmp_path: Path, function) -> None:  # type: ignore[no-untyped-def]
    """Orthanc stops before the results are ready; the watcher records the retryable error, keeps
    the results, and delivers them once Orthanc is back on its port."""
    inbox, port = tmp_path / "medfn", free_port()
    app = create_app(InferencePlane(), dicomweb_sink=FolderSink(inbox), metrics_route=False)
    series = phantom_series(52, 0, generate_uid())
    with serve_in_thread(app) as base:
        with run_orthanc(tmp_path / "orthanc", http_port=port, stow_url=f"{base}/dicomweb") as orthanc:
            upload_and_send(orthanc, series, "stow")
        destination = DicomwebDestination(f"http://127.0.0.1:{port}/dicom-web", retry=ONE_TRY, timeout_s=5)
        with pipeline(inbox, function, destination, once=False) as local:
            stop = threading.Event()
            watching = threading.Thread(target=local.watch.run, kwargs={"poll_s": 0.2, "stop": stop.is_set})
            watching.start()
            try:
                record = wait_for(local, lambda r: r.get("retryable"), seconds=60)
                assert record["outcome"] == "error" and "DICOMweb" in record["reason"]
                assert (inbox / "results" / series.study_uid / series.series_uid / "seg.dcm").exists()
                with run_orthanc(tmp_path / "orthanc", http_port=port, stow_url=f"{base}/dicomweb") as orthanc:
                    record = wait_for(local, lambda r: r["outcome"] == "result", seconds=90)
                    assert modalities_in(orthanc, series.study_uid) == ["CT", "SEG", "SR"]
            finally:
                stop.set()
                watching.join(timeout=60)


def wait_for(local: LocalPipeline, done, seconds: float) -> dict:  # type: ignore[no-untyped-def,type-arg]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [r for r in local.status.records() if "generation" in r]
        if found and done(found[0]):
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no such series record within {seconds} s: {local.status.records()}")
