"""`medfn listen`: dcmtk's storescu and echoscu against the Storage SCP, and the C-STORE statuses
it answers for data it cannot take."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, SegmentationStorage, Verification

from medfn.dicomweb.listen import StoreListener
from medfn.dicomweb.sinks import FolderSink
from medfn.errors import StorageUnavailable
from medfn.studies.headers import InstanceHeader
from tests.conftest import REPO, free_port
from tests.pacs.conftest import ct_series, received

DEFLATED = "1.2.840.10008.1.2.1.99"
EXPLICIT = "1.2.840.10008.1.2.1"


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreListener]:
    scp = StoreListener(FolderSink(tmp_path_factory.mktemp("listen")), ae_title="MEDFN", port=free_port())
    scp.start()
    yield scp
    scp.stop()


def folder_of(listener: StoreListener) -> Path:
    assert isinstance(listener.sink, FolderSink)
    return listener.sink.incoming.parent


def dcmtk(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.skip(f"dcmtk's {tool} is not installed (Debian package dcmtk; .ci/run installs it)")
    return found


def test_storescu_sends_files(listener: StoreListener, tmp_path: Path) -> None:
    series = ct_series(2)
    paths = []
    for k, data in enumerate(series):
        paths.append(tmp_path / f"slice{k}.dcm")
        paths[-1].write_bytes(data)
    done = subprocess.run(
        [dcmtk("storescu"), "-aec", "MEDFN", "-aet", "DCMTK", "127.0.0.1", str(listener.port), *map(str, paths)],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    study = str(pydicom.dcmread(paths[0]).StudyInstanceUID)
    files = received(folder_of(listener), study)
    assert sorted(pydicom.dcmread(f).SOPInstanceUID for f in files) == sorted(
        pydicom.dcmread(p).SOPInstanceUID for p in paths
    )


def test_echoscu_gets_an_answer_for_our_ae_title_only(listener: StoreListener) -> None:
    echo = [dcmtk("echoscu"), "-aet", "DCMTK", "127.0.0.1", str(listener.port)]
    assert subprocess.run([*echo, "-aec", "MEDFN"], capture_output=True, timeout=30).returncode == 0
    assert subprocess.run([*echo, "-aec", "SOMEONE_ELSE"], capture_output=True, timeout=30).returncode != 0


def _associate(port: int, contexts: list[tuple[str, str]]) -> object:
    ae = AE(ae_title="TESTSCU")
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    return ae.associate("127.0.0.1", port, ae_title="MEDFN")


def test_deflated_and_unsupported_sop_classes_are_refused_at_association(listener: StoreListener) -> None:
    contexts = [(Verification, EXPLICIT), (CTImageStorage, DEFLATED), (SegmentationStorage, EXPLICIT)]
    assoc = _associate(listener.port, contexts)
    try:
        assert assoc.is_established  # type: ignore[attr-defined]
        assert [c.abstract_syntax for c in assoc.accepted_contexts] == [Verification]  # type: ignore[attr-defined]
        assert len(assoc.rejected_contexts) == 2  # type: ignore[attr-defined]
    finally:
        assoc.release()  # type: ignore[attr-defined]


def _send(port: int, ds: pydicom.Dataset) -> int:
    assoc = _associate(port, [(CTImageStorage, EXPLICIT)])
    try:
        return int(assoc.send_c_store(ds).Status)  # type: ignore[attr-defined]
    finally:
        assoc.release()  # type: ignore[attr-defined]


def test_data_it_cannot_take_gets_a_failure_status(listener: StoreListener) -> None:
    good = pydicom.dcmread(io.BytesIO(ct_series(1)[0]))
    good.file_meta.TransferSyntaxUID = EXPLICIT
    assert _send(listener.port, good) == 0x0000

    no_uid = pydicom.dcmread(io.BytesIO(ct_series(1)[0]))
    no_uid.StudyInstanceUID = "Phantom^Series"
    assert _send(listener.port, no_uid) == 0xC000

    short = pydicom.dcmread(io.BytesIO(ct_series(1)[0]))
    short.PixelData = short.PixelData[:100]
    assert _send(listener.port, short) == 0xC000
    assert not received(folder_of(listener), str(short.StudyInstanceUID))


def test_storage_down_is_out_of_resources() -> None:
    class Down:
        def put(self, header: InstanceHeader, data: bytes) -> str:
            raise StorageUnavailable("the incoming folder could not be written")

    scp = StoreListener(Down(), port=free_port())
    scp.start()
    try:
        assert _send(scp.port, pydicom.dcmread(io.BytesIO(ct_series(1)[0]))) == 0xA700
    finally:
        scp.stop()


def test_the_command_runs_and_stops(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "medfn.cli", "listen", str(tmp_path), "--port", str(port)]
    with (tmp_path / "log.txt").open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not (probe := _associate(port, [(Verification, EXPLICIT)])).is_established:  # type: ignore[attr-defined]
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "log.txt").read_text()
            time.sleep(0.2)
        probe.release()  # type: ignore[attr-defined]
        assert _send(port, pydicom.dcmread(io.BytesIO(ct_series(1)[0]))) == 0
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert len(list((tmp_path / "incoming").rglob("*.dcm"))) == 1
    assert "1 stored, 0 refused" in (tmp_path / "log.txt").read_text()  # SIGTERM stops it as Ctrl-C does
