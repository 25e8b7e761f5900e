"""Against a real Orthanc: it sends studies to medfn (its DICOMweb client, its C-STORE SCU), and
medfn stores SEG and SR back into it (STOW-RS and C-STORE), found in the source study by QIDO-RS."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_client import DICOMwebClient

from medfn.dicomweb.credentials import Credentials
from medfn.dicomweb.cstore import CStoreDestination
from medfn.dicomweb.delivery import RetryPolicy
from medfn.dicomweb.destination import DicomwebDestination
from medfn.errors import StorageUnavailable, UnprocessableInput
from tests.conftest import REPO, free_port
from tests.pacs.conftest import PacsSite, ct_series, received, run_orthanc, seg_and_sr

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
QUICK = RetryPolicy(attempts=3, first_wait_s=0.05, max_wait_s=0.1)


def uids(data: bytes) -> tuple[str, str]:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)


def test_orthanc_sends_a_study_to_medfn_by_stow_rs(pacs_site: PacsSite) -> None:
    series = ct_series(3)
    study_uid = uids(series[0])[0]
    study = pacs_site.orthanc.upload(series)
    answer = pacs_site.orthanc.post("/dicom-web/servers/medfn/stow", {"Resources": [study], "Synchronous": True})
    assert answer.status_code == 200, answer.text
    files = received(pacs_site.stow_dir, study_uid)
    assert sorted(f.stem for f in files) == sorted(uids(d)[1] for d in series)
    assert {f.read_bytes() for f in files} == set(series)  # what Orthanc held, byte for byte


def test_orthanc_sends_a_study_to_medfn_listen_by_c_store(pacs_site: PacsSite) -> None:
    series = ct_series(3)
    study_uid = uids(series[0])[0]
    study = pacs_site.orthanc.upload(series)
    answer = pacs_site.orthanc.post("/modalities/medfn/store", {"Resources": [study], "Synchronous": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["FailedInstancesCount"] == 0
    files = received(pacs_site.listen_dir, study_uid)
    assert sorted(f.stem for f in files) == sorted(uids(d)[1] for d in series)
    sent = {uids(d)[1]: pydicom.dcmread(io.BytesIO(d)) for d in series}
    for f in files:  # the same data set as sent (its file meta is the listener's)
        got = pydicom.dcmread(f)
        assert got.PixelData == sent[f.stem].PixelData and got.SeriesInstanceUID == sent[f.stem].SeriesInstanceUID


def test_seg_and_sr_are_stored_into_the_source_study_by_stow_rs(pacs_site: PacsSite) -> None:
    orthanc = pacs_site.orthanc
    series = ct_series(3)
    study_uid = uids(series[0])[0]
    orthanc.upload(series)
    results = seg_and_sr(series, seed="stow-into-orthanc")
    destination = DicomwebDestination(f"{orthanc.url}/dicom-web", retry=QUICK)
    destination.deliver(results)

    found = httpx.get(f"{orthanc.url}/dicom-web/studies/{study_uid}/series", timeout=30).json()
    modalities = sorted(item["00080060"]["Value"][0] for item in found)
    assert modalities == ["CT", "SEG", "SR"]
    client = DICOMwebClient(f"{orthanc.url}/dicom-web")
    for data in results:
        ds = pydicom.dcmread(io.BytesIO(data))
        back = client.retrieve_instance(study_uid, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
        assert back.SOPClassUID == ds.SOPClassUID and back.StudyInstanceUID == study_uid

    destination.deliver(results)  # again: the same UIDs, so still one copy of each
    assert len(orthanc.instances_of_study(study_uid)) == len(series) + 2


def test_a_destination_that_is_down_is_retried_then_storage_unavailable(tmp_path: Path) -> None:
    series = ct_series(3)
    results = seg_and_sr(series, seed="down-then-up")
    port = free_port()
    destination = DicomwebDestination(f"http://127.0.0.1:{port}/dicom-web", retry=QUICK, timeout_s=5)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="failed 3 times"):
        destination.deliver(results)
    assert time.monotonic() - started < 5  # bounded: three tries, short waits

    with run_orthanc(tmp_path / "orthanc", http_port=port) as orthanc:  # the PACS is back: a redelivery works
        destination.deliver(results)
        assert sorted(orthanc.instances_of_study(uids(series[0])[0])) == sorted(uids(d)[1] for d in results)


def test_a_refusal_is_not_retried(pacs_site: PacsSite) -> None:
    """medfn's own STOW-RS refuses SEG and SR (not image SOP classes it takes): a 409, at once."""
    results = seg_and_sr(ct_series(3), seed="refused")
    destination = DicomwebDestination(pacs_site.stow_url, retry=RetryPolicy(attempts=3, first_wait_s=5))
    started = time.monotonic()
    with pytest.raises(UnprocessableInput, match="HTTP 409 .Failure Reasons 0122, 0122"):
        destination.deliver(results)
    assert time.monotonic() - started < 4  # no 5 s wait: refused, not retried


def test_credentials_are_sent(tmp_path: Path) -> None:
    """Against an Orthanc that wants a password: the right one stores, a wrong one is a 401,
    retried (a rotated secret may fix it) and then StorageUnavailable."""
    port = free_port()
    results = seg_and_sr(ct_series(3), seed="credentials")
    with run_orthanc(tmp_path / "orthanc", http_port=port, users={"medfn": "s3cret-pw"}) as orthanc:
        good = DicomwebDestination(f"{orthanc.url}/dicom-web", Credentials("medfn", "s3cret-pw"), QUICK)
        good.deliver(results)
        bad = DicomwebDestination(f"{orthanc.url}/dicom-web", Credentials("medfn", "wrong"), QUICK)
        with pytest.raises(StorageUnavailable, match="HTTP 401") as caught:
            bad.deliver(results)
        assert "wrong" not in str(caught.value) and "s3cret" not in str(caught.value)


def test_seg_and_sr_are_stored_by_c_store(pacs_site: PacsSite) -> None:
    orthanc = pacs_site.orthanc
    series = ct_series(3)
    study_uid = uids(series[0])[0]
    orthanc.upload(series)
    results = seg_and_sr(series, seed="c-store-into-orthanc")
    destination = CStoreDestination.parse(f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", retry=QUICK)
    destination.deliver(results)
    destination.deliver(results)
    held = orthanc.instances_of_study(study_uid)
    assert len(held) == len(series) + 2 and {uids(d)[1] for d in results} <= set(held)

    down = CStoreDestination("ORTHANC", "127.0.0.1", free_port(), retry=QUICK, timeout_s=2)
    with pytest.raises(StorageUnavailable, match="failed 3 times"):
        down.deliver(results)


def test_orthanc_forwards_each_instance_with_the_docs_lua_script(pacs_site: PacsSite, tmp_path: Path) -> None:
    """docs/pacs.md's Lua block, run by an Orthanc: every instance stored there reaches medfn."""
    docs = (REPO / "docs" / "pacs.md").read_text()
    lua = docs.split("```lua\n", 1)[1].split("```", 1)[0]
    series = ct_series(3)
    study_uid = uids(series[0])[0]
    with run_orthanc(tmp_path / "orthanc", http_port=free_port(), stow_url=pacs_site.stow_url, lua=lua) as orthanc:
        orthanc.upload(series)
        deadline = time.monotonic() + 20
        while len(received(pacs_site.stow_dir, study_uid)) < len(series):
            assert time.monotonic() < deadline, orthanc.log.read_text()[-2000:]
            time.sleep(0.1)
