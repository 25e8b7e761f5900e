"""What every image task shares: payload -> decoded image -> the model's input tensor."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import orjson
from PIL import Image

from medfn.codecs import DecodedImage, decode_image
from medfn.codecs.budget import budget_bytes
from medfn.errors import UnprocessableInput
from medfn.serving.model import Model, Payload
from medfn.tasks.guards import Guards

IMAGE_MEDIA_TYPES = frozenset(
    {"image/png", "image/jpeg", "application/dicom", "application/octet-stream", "application/json"}
)
# A 16k x 16k radiograph is already unusually large; beyond this we refuse before decoding.
DEFAULT_MAX_PIXELS = 64_000_000


def payload_bytes(payload: Payload) -> bytes:
    """The image bytes of a raw body, or of `{"image": "<base64>"}` in a JSON body."""
    if payload.media_type != "application/json":
        return payload.data
    try:
        document = orjson.loads(payload.data)
    except orjson.JSONDecodeError as exc:
        raise UnprocessableInput("body is not valid JSON") from exc
    encoded = document.get("image") if isinstance(document, dict) else None
    if not isinstance(encoded, str):
        raise UnprocessableInput('JSON body needs "image": the file as a base64 string')
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UnprocessableInput('"image" is not valid base64') from exc


class ImageModel(Model):
    """Decodes PNG, JPEG or DICOM and shapes it as `[preprocessing]` says."""

    media_types = IMAGE_MEDIA_TYPES

    def task_problems(self) -> list[str]:
        """`[preprocessing]` against the image input, laid out [N, C, H, W]."""
        prep, spec = self.config.preprocessing, self.config.inputs[0]
        if len(spec.shape) != 4:
            return [f"input {spec.name!r} must be [N, C, H, W] for an image task, not rank {len(spec.shape)}"]
        problems = []
        size = prep.get("size")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            problems.append("[preprocessing] size must be [height, width] in pixels")
        else:
            for axis, want, what in ((2, size[0], "height"), (3, size[1], "width")):
                fixed = self.known_dim(spec, axis)
                if fixed is not None and fixed != want:
                    problems.append(f"[preprocessing] size has {what} {want}; input {spec.name!r} takes {fixed}")
        color = prep.get("color", "L")
        channels = {"L": 1, "RGB": 3}.get(color)
        if channels is None:
            problems.append(f'[preprocessing] color must be "L" or "RGB", not {color!r}')
        elif (taken := self.known_dim(spec, 1)) not in (None, channels):
            problems.append(f"[preprocessing] color {color} has {channels} channels; input {spec.name!r} takes {taken}")
        for key in ("mean", "std"):
            values = prep.get(key, [0.0 if key == "mean" else 1.0])
            if not isinstance(values, list) or len(values) not in (1, channels or 1):
                problems.append(f"[preprocessing] {key} must hold 1 or {channels} values")
        if any(float(v) == 0.0 for v in prep.get("std", [1.0])):
            problems.append("[preprocessing] std must not be 0")
        problems += Guards(self.config.guards).problems()
        window = prep.get("window")
        if window is not None and not (isinstance(window, list) and len(window) == 2 and float(window[1]) > 0):
            problems.append("[preprocessing] window must be [center, width] with a width above 0")
        return problems

    def decode(self, payload: Payload) -> DecodedImage:
        prep = self.config.preprocessing
        window = prep.get("window")
        return decode_image(
            payload_bytes(payload),
            max_pixels=int(prep.get("max_pixels", DEFAULT_MAX_PIXELS)),
            max_bytes=budget_bytes(self.memory_mb),
            window=(float(window[0]), float(window[1])) if window else None,
            prefer_file_window=prep.get("window_source", "file") == "file",
            declared="dicom" if payload.media_type == "application/dicom" else None,
        )

    def to_tensor(self, image: DecodedImage) -> np.ndarray:
        """[1, C, H, W] float32: colour converted, resized, normalised."""
        prep = self.config.preprocessing
        pixels = _to_color(image.pixels, prep.get("color", "L"))
        height, width = (int(v) for v in prep["size"])
        channels = [_resize(pixels[..., c], width, height) for c in range(pixels.shape[-1])]
        tensor = np.stack(channels)  # C, H, W
        mean = np.asarray(prep.get("mean", [0.0]), dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(prep.get("std", [1.0]), dtype=np.float32).reshape(-1, 1, 1)
        return ((tensor - mean) / std)[np.newaxis].astype(np.float32, copy=False)

    def request_body(self) -> dict[str, Any] | None:
        binary = {"schema": {"type": "string", "format": "binary"}}
        image = {"type": "string", "contentEncoding": "base64", "description": "the scan file, base64"}
        as_json = {"type": "object", "required": ["image"], "properties": {"image": image}}
        scans = ("image/png", "image/jpeg", "application/dicom")
        return {"required": True, "content": {**dict.fromkeys(scans, binary), "application/json": {"schema": as_json}}}

    def _coarser_than_trained(self, image: DecodedImage) -> list[str]:
        """An image with fewer pixels than the model's grid is enlarged: detail it never had is
        interpolated, not measured, so the answer comes with a warning."""
        height, width = image.pixels.shape[:2]
        size = list(self.config.preprocessing["size"])
        if height >= size[0] and width >= size[1]:
            return []
        model_grid = f"{size[1]}x{size[0]}"
        return [f"the image is {width}x{height} pixels, coarser than the {model_grid} the model reads; it was enlarged"]

    def preprocess(self, payload: Payload) -> tuple[dict[str, np.ndarray], Any]:
        image = self.decode(payload)
        warnings = Guards(self.config.guards).modality(image) + self._coarser_than_trained(image)
        return {self.config.inputs[0].name: self.to_tensor(image)}, (image, warnings)


def _to_color(pixels: np.ndarray, color: str) -> np.ndarray:
    """(H, W, C) with C = 1 for "L", 3 for "RGB"."""
    if color == "L":
        if pixels.ndim == 3:  # ITU-R 601 luma, as Pillow's convert("L")
            pixels = pixels[..., :3] @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
        return pixels[..., np.newaxis]
    if pixels.ndim == 2:
        return np.repeat(pixels[..., np.newaxis], 3, axis=-1)
    return pixels[..., :3]


def _resize(channel: np.ndarray, width: int, height: int) -> np.ndarray:
    """To the model's grid. Shrinking averages each output pixel's area (a box filter), as a
    coarser detector would have measured it: a scan at twice the training resolution comes back
    as the training grid saw it, texture and noise included. Enlarging interpolates bilinearly."""
    if channel.shape == (height, width):
        return channel.astype(np.float32, copy=False)
    shrinking = channel.shape[0] >= height and channel.shape[1] >= width
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    resized = Image.fromarray(channel.astype(np.float32, copy=False), mode="F").resize((width, height), resample)
    return np.asarray(resized, dtype=np.float32)
