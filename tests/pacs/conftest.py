"""A real PACS for the PACS tests: Orthanc (Debian `orthanc` + `orthanc-dicomweb`) as an ordinary
process on free loopback ports, with its configuration in a temp folder, pointing at medfn's STOW-RS
endpoint (uvicorn in a thread) and at a `medfn listen` Storage SCP; plus small CT series and a
SEG/SR pair over one of them."""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pydicom.uid import generate_uid

from medfn.dicomweb.listen import StoreListener
from medfn.dicomweb.sinks import FolderSink
from medfn.http import create_app
from medfn.serving import InferencePlane
from model_store.build import dicom_series
from tests.conftest import free_port, serve_in_thread

ORTHANC = shutil.which("Orthanc")
PLUGIN_PLACES = ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so*"]
PATIENT_NAME = "Phantom^Series"  # what must never come back in an answer or a log line


def ct_series(slices: int = 3, study_uid: str | None = None, size: int = 32) -> list[bytes]:
    """A small synthetic CT series (one CT Image Storage instance per slice) of a new series."""
    hu = np.linspace(-1000, 400, slices * size * size, dtype=np.float32).reshape(slices, size, size)
    options = dicom_series.SeriesOptions(study_uid=study_uid or generate_uid(), series_uid=generate_uid())
    return dicom_series.single_frame_series(hu, options)


def seg_and_sr(series: list[bytes], seed: str) -> list[bytes]:
    """medfn's results over `series`: a SEG of a small blob, and a classification SR of slice 0."""
    from medfn.studies import build_volume, classification_report, segmentation
    from medfn.studies.writing import read_dataset, to_bytes

    volume = build_volume(series)
    mask = np.zeros(volume.shape, np.uint8)
    mask[1, 10:20, 10:20] = 1
    common: dict[str, Any] = {"model_name": "pacs_test", "model_version": 1, "uid_seed": seed}
    seg = segmentation(volume, mask, finding_label="nodule", **common)
    sr = classification_report(
        read_dataset(series[0]), label="nodule", probabilities={"nodule": 0.8, "none": 0.2}, **common
    )
    return [to_bytes(seg), to_bytes(sr)]


@dataclass(frozen=True)
class Orthanc:
    url: str  # its REST API, DICOMweb under /dicom-web/
    dicom_port: int
    log: Path

    def upload(self, instances: list[bytes]) -> str:
        """Store instances through the REST API; the Orthanc ID of their study."""
        study = ""
        for data in instances:
            answer = httpx.post(f"{self.url}/instances", content=data, timeout=30)
            answer.raise_for_status()
            study = answer.json()["ParentStudy"]
        return study

    def post(self, path: str, body: Any, timeout: float = 60) -> httpx.Response:
        return httpx.post(self.url + path, json=body, timeout=timeout)

    def instances_of_study(self, study_uid: str) -> list[str]:
        """SOP Instance UIDs Orthanc holds in a study, by its own DICOMweb QIDO-RS."""
        answer = httpx.get(f"{self.url}/dicom-web/studies/{study_uid}/instances", timeout=30)
        if answer.status_code == 204 or not answer.content:
            return []
        answer.raise_for_status()
        return [item["00080018"]["Value"][0] for item in answer.json()]


def orthanc_plugin() -> str:
    for place in PLUGIN_PLACES:
        found = sorted(glob.glob(place))
        if found:
            return found[0]
    pytest.fail("Orthanc is installed but its DICOMweb plugin is not (Debian package orthanc-dicomweb)")


@contextmanager
def run_orthanc(
    folder: Path,
    *,
    http_port: int,
    stow_url: str = "",
    listen_port: int = 0,
    users: dict[str, str] | None = None,
    lua: str = "",
) -> Iterator[Orthanc]:
    """`Orthanc CONFIG.json` as a child process, answering /system; killed on exit. `users`: HTTP
    basic authentication required, with these passwords; `lua`: a Lua script it runs."""
    if ORTHANC is None:
        pytest.skip("Orthanc is not installed (Debian packages orthanc and orthanc-dicomweb; .ci/run installs them)")
    folder.mkdir(parents=True, exist_ok=True)
    dicom_port = free_port()
    config: dict[str, Any] = {
        "Name": "medfn-test",
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "Plugins": [orthanc_plugin()],
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": bool(users),
        "RegisteredUsers": users or {},
        "SaveJobs": False,
        "HttpTimeout": 20,
        "DicomScuTimeout": 20,
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": False,
            "Servers": {"medfn": {"Url": f"{stow_url}/", "ChunkedTransfers": False}} if stow_url else {},
        },
        "DicomModalities": {"medfn": ["MEDFN", "127.0.0.1", listen_port]} if listen_port else {},
    }
    if lua:
        (folder / "script.lua").write_text(lua)
        config["LuaScripts"] = [str(folder / "script.lua")]
    (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
    log = folder / "orthanc.log"
    with log.open("wb") as out:
        process = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=out, stderr=out)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"Orthanc exited at start with status {process.returncode}; see {log}")
            try:
                auth = next(iter(users.items())) if users else None
                if httpx.get(url + "/system", timeout=1, auth=auth).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Orthanc did not answer /system within 30 s; see {log}")
            time.sleep(0.05)
        yield Orthanc(url, dicom_port, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass(frozen=True)
class PacsSite:
    orthanc: Orthanc
    stow_url: str  # medfn's DICOMweb root: POST {stow_url}/studies
    stow_dir: Path  # where STOW-RS puts instances: stow_dir/incoming/...
    listener: StoreListener
    listen_dir: Path  # where C-STORE puts them


@pytest.fixture(scope="session")
def pacs_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PacsSite]:
    """medfn's STOW-RS endpoint and Storage SCP, and an Orthanc that knows both as "medfn"."""
    if ORTHANC is None:
        pytest.skip("Orthanc is not installed (Debian packages orthanc and orthanc-dicomweb; .ci/run installs them)")
    root = tmp_path_factory.mktemp("pacs")
    stow_dir, listen_dir = root / "stow", root / "listen"
    app = create_app(InferencePlane(), dicomweb_sink=FolderSink(stow_dir), metrics_route=False)
    listener = StoreListener(FolderSink(listen_dir), ae_title="MEDFN", port=free_port())
    listener.start()
    try:
        with serve_in_thread(app) as base:
            stow_url = f"{base}/dicomweb"
            with run_orthanc(
                root / "orthanc", http_port=free_port(), stow_url=stow_url, listen_port=listener.port
            ) as orthanc:
                yield PacsSite(orthanc, stow_url, stow_dir, listener, listen_dir)
    finally:
        listener.stop()


def received(folder: Path, study_uid: str) -> list[Path]:
    """The instance files medfn received for a study (hidden partial files excluded)."""
    return sorted(p for p in (folder / "incoming" / study_uid).rglob("*.dcm") if not p.name.startswith("."))
