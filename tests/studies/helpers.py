"""Series for the studies tests: small phantom volumes written as DICOM, and dciodvfy's verdict."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from model_store.build import ct_phantoms, dicom_part10, dicom_series
from model_store.build.dicom_series import SeriesOptions

DCIODVFY = "/usr/bin/dciodvfy"
PATIENT_NAME = "Phantom^Series"  # dicom_series' default: it must not leak anywhere else
SIZE, SLICES = 32, 6

needs_dciodvfy = pytest.mark.skipif(
    shutil.which(DCIODVFY) is None, reason=f"{DCIODVFY} (Debian dicom3tools) is not installed"
)


def phantom_hu(slices: int = SLICES, size: int = SIZE, seed: int = 3) -> np.ndarray:
    """HU as a scanner stores them: whole numbers (stored = HU + 1024 is then exact)."""
    hu, _ = ct_phantoms.generate(slices, seed=seed, size=size)
    return np.round(hu).astype(np.float32)


def series(hu: np.ndarray | None = None, **options: object) -> list[bytes]:
    return dicom_series.single_frame_series(phantom_hu() if hu is None else hu, SeriesOptions(**options))


def enhanced(hu: np.ndarray | None = None, **options: object) -> bytes:
    return dicom_series.enhanced_ct(phantom_hu() if hu is None else hu, SeriesOptions(**options))


def edited(data: bytes, **changes: object) -> bytes:
    """The file with attributes set (a value) or deleted (None)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return dicom_part10.to_bytes(ds)


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dciodvfy_errors(ds: Dataset) -> list[str]:
    """dciodvfy's lines that start with "Error" (warnings are allowed)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "object.dcm"
        path.write_bytes(to_bytes(ds))
        run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    assert not any(line.startswith("Abort") for line in lines), lines
    return [line for line in lines if line.startswith("Error")]
