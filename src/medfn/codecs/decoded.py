"""What every decoder returns: pixels in [0, 1], and what the file says about them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DecodedImage:
    """Pixels as float32 in [0, 1]: (H, W) for grayscale, (H, W, 3) for colour."""

    pixels: np.ndarray
    source: str  # "png" | "jpeg" | "dicom"
    pixel_spacing_mm: tuple[float, float] | None = None  # (row, column), from DICOM
    sop_instance_uid: str | None = None  # links a result back to its image, without PHI
    modality: str | None = None  # DICOM Modality (CT, DX, ...), for the model's guards
    photometric: str | None = None  # DICOM PhotometricInterpretation as the file states it
