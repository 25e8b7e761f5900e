"""DICOM in and out as bytes, for the pipeline: a guarded read, and a Part-10 write of our results."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from medfn.studies.headers import read_dataset

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["read_dataset", "to_bytes"]


def to_bytes(ds: Dataset) -> bytes:
    """A Part-10 file: 128-byte preamble, 'DICM', file meta (highdicom's), then the data set."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
