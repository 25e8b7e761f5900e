"""`medfn watch` against a hostile folder: links out of it are never read, and a file name cannot
forge a log line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from model_store.build import chest_phantoms
from tests.conftest import REPO
from tests.pipeline.test_watch import drop, run_watch


def watch_once(root: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    functions = str(REPO / "functions")
    assert run_watch(str(root), "--once", "--function", "scan_classifier", "--functions", functions, "-v") == 0
    out, _ = capsys.readouterr()
    return dict(json.loads(out.splitlines()[-1]))


def test_a_link_out_of_the_folder_is_never_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "elsewhere" / "secret.dcm"
    secret.parent.mkdir()
    secret.write_bytes(chest_phantoms.to_dicom(chest_phantoms.generate(1, seed=3)[0][0]))
    root = tmp_path / "scans"
    (root / "incoming" / "linked").mkdir(parents=True)
    (root / "incoming" / "secret.dcm").symlink_to(secret)
    (root / "incoming" / "linked" / "dir").symlink_to(secret.parent, target_is_directory=True)
    summary = watch_once(root, capsys)
    assert summary["results"] == summary["errors"] == 0
    assert not (root / "quarantine").exists() or not any((root / "quarantine").rglob("*.dcm"))
    assert not (root / "results").exists() or not any((root / "results").rglob("*.json"))


def test_a_file_name_cannot_forge_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)
    drop(tmp_path, "scan\nERROR forged line.png", b"not an image")
    assert watch_once(tmp_path, capsys)["errors"] == 1
    assert not any(line.startswith("ERROR forged") for line in caplog.text.splitlines())
    assert "scan\\nERROR forged line.png" in caplog.text
