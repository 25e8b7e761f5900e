"""Image segmentation: a binary mask as PNG, run-length encoding, area and bounding box."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import numpy as np
from PIL import Image

from medfn.codecs import DecodedImage
from medfn.serving.model import Payload, Prediction
from medfn.tasks.imaging import ImageModel


def run_lengths(mask: np.ndarray) -> list[int]:
    """Row-major lengths of alternating runs, the first counting zeros (possibly 0 long)."""
    flat = mask.ravel().astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    lengths = np.diff(bounds).tolist()
    return lengths if flat.size == 0 or flat[0] == 0 else [0, *lengths]


def bounding_box(mask: np.ndarray) -> dict[str, int] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return {"x_min": int(cols[0]), "y_min": int(rows[0]), "x_max": int(cols[-1]), "y_max": int(rows[-1])}


def mask_png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((mask * 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


class ImageSegmenter(ImageModel):
    details_key = "mask"

    def task_problems(self) -> list[str]:
        problems = super().task_problems()
        if self.config.preprocessing.get("aspect", "stretch") != "stretch":  # the mask maps back by stretching
            problems.append('[preprocessing] aspect must be "stretch" for a segmenter: its mask is mapped back so')
        return problems

    def postprocess(self, outputs: dict[str, np.ndarray], context: Any, payload: Payload) -> Prediction:
        post = self.config.postprocessing
        image: DecodedImage
        image, warnings = context
        probabilities = self.first(outputs[post.get("output", self.config.outputs[0].name)])[0]
        # Upsample probabilities, not the mask, to the scan's own size: smoother edges.
        height, width = image.pixels.shape[:2]
        if probabilities.shape != (height, width):
            probabilities = np.asarray(
                Image.fromarray(probabilities.astype(np.float32), mode="F").resize(
                    (width, height), Image.Resampling.BILINEAR
                )
            )
        mask = (probabilities >= float(post.get("threshold", 0.5))).astype(np.uint8)
        png = mask_png(mask)
        area_px = int(mask.sum())
        found = str(post.get("label", "foreground"))
        present = float(probabilities.max(initial=0.0))  # the likeliest pixel's probability
        details: dict[str, Any] = {
            "mask_png_base64": base64.b64encode(png).decode("ascii"),
            "rle": {"size": [height, width], "order": "row-major", "first": 0, "counts": run_lengths(mask)},
            "area_px": area_px,
            "area_mm2": None,
            "bounding_box": bounding_box(mask),
        }
        if image.pixel_spacing_mm:
            row_mm, col_mm = image.pixel_spacing_mm
            details["area_mm2"] = round(area_px * row_mm * col_mm, 3)
        return Prediction(
            found if area_px else "none",
            {found: present, "none": 1.0 - present},
            details=details,
            binary=(png, "image/png"),
            warnings=warnings,
            sop_instance_uid=image.sop_instance_uid,
        )

    def saliency(
        self, inputs: dict[str, np.ndarray], context: Any, payload: Payload
    ) -> tuple[Prediction, str, np.ndarray, dict[str, Any]]:
        """The per-pixel probability the mask was thresholded from, from the same single run."""
        started = time.perf_counter()
        outputs = self.run(inputs)
        prediction = self.finish(outputs, context, payload, (time.perf_counter() - started) * 1000.0)
        post = self.config.postprocessing
        probabilities = self.first(outputs[post.get("output", self.config.outputs[0].name)])[0]
        extra = {"label": str(post.get("label", "foreground")), "threshold": float(post.get("threshold", 0.5))}
        return prediction, "probability-map", probabilities.astype(np.float32), extra
