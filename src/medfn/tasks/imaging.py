"""What every image task shares: payload -> decoded image -> the model's input tensor."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import orjson

from medfn.codecs import DecodedImage, decode_image
from medfn.codecs.budget import budget_bytes
from medfn.errors import BadRequest, UnprocessableInput
from medfn.serving.model import Explanation, Model, Payload, Prediction
from medfn.tasks.guards import Guards
from medfn.tasks.image_geometry import fit

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

    @property
    def batched(self) -> bool:
        """Whether the graph has a batch axis (model.toml max_batch_size > 0)."""
        return self.config.max_batch_size > 0

    def first(self, output: np.ndarray) -> np.ndarray:
        """The one image's part of an output: row 0 of a batch, or all of an unbatched output."""
        return output[0] if self.batched else output

    def task_problems(self) -> list[str]:
        """`[preprocessing]` against the image input, laid out [N, C, H, W]."""
        prep, spec = self.config.preprocessing, self.config.inputs[0]
        layout = prep.get("layout", "NCHW")
        batch = 1 if self.batched else 0  # a graph without a batch axis takes one image, [C, H, W] or [H, W, C]
        if len(spec.shape) != 3 + batch:
            shape = "[N, C, H, W] or [N, H, W, C]" if batch else "[C, H, W] or [H, W, C] (max_batch_size = 0)"
            return [f"input {spec.name!r} must be {shape} for an image task, not rank {len(spec.shape)}"]
        channel_axis, height_axis, width_axis = (
            (batch, batch + 1, batch + 2) if layout == "NCHW" else (batch + 2, batch, batch + 1)
        )
        problems = []
        size = prep.get("size")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            problems.append("[preprocessing] size must be [height, width] in pixels")
        else:
            for axis, want, what in ((height_axis, size[0], "height"), (width_axis, size[1], "width")):
                fixed = self.known_dim(spec, axis)
                if fixed is not None and fixed != want:
                    problems.append(f"[preprocessing] size has {what} {want}; input {spec.name!r} takes {fixed}")
        color = prep.get("color", "L")
        channels = {"L": 1, "RGB": 3, "BGR": 3}.get(color)
        if channels is None:
            problems.append(f'[preprocessing] color must be "L", "RGB" or "BGR", not {color!r}')
        elif (taken := self.known_dim(spec, channel_axis)) not in (None, channels):
            problems.append(f"[preprocessing] color {color} has {channels} channels; input {spec.name!r} takes {taken}")
        for key in ("mean", "std"):
            values = prep.get(key, [0.0 if key == "mean" else 1.0])
            if not isinstance(values, list) or len(values) not in (1, channels or 1):
                problems.append(f"[preprocessing] {key} must hold 1 or {channels} values")
        if any(float(v) == 0.0 for v in prep.get("std", [1.0])):
            problems.append("[preprocessing] std must not be 0")
        if prep.get("resize") == "bicubic" and prep.get("antialias") is False:
            problems.append("[preprocessing] resize bicubic is offered with antialias only")
        problems += Guards(self.config.guards).problems()
        side = self.config.explain.get("overlay_max_side", 256)
        if not isinstance(side, int) or isinstance(side, bool) or not 16 <= side <= 4096:
            problems.append("[explain] overlay_max_side must be a whole number of pixels from 16 to 4096")
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
        """[1, C, H, W] or [1, H, W, C] float32: colour, size, scale, mean and std as model.toml says."""
        prep = self.config.preprocessing
        pixels = _to_color(image.pixels, prep.get("color", "L"))
        height, width = (int(v) for v in prep["size"])
        resize, aspect = prep.get("resize", "area"), prep.get("aspect", "stretch")
        fitted = fit(pixels, height, width, resize, bool(prep.get("antialias", True)), aspect)  # H, W, C
        if prep.get("scale", "unit") == "byte":
            fitted = fitted * np.float32(255.0)
        mean = np.asarray(prep.get("mean", [0.0]), dtype=np.float32)
        std = np.asarray(prep.get("std", [1.0]), dtype=np.float32)
        normalised = (fitted - mean) / std  # per channel, the last axis
        if prep.get("layout", "NCHW") == "NCHW":
            normalised = normalised.transpose(2, 0, 1)
        tensor = normalised[np.newaxis] if self.batched else normalised
        return tensor.astype(np.float32, copy=False)

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

    # -- explanations (medfn.explain) ----------------------------------------------------------

    def explain(self, payload: Payload) -> Explanation:
        """The answer, and where in the scan it came from: the task's map over the model's input
        grid, and that map laid over the scan as a PNG."""
        from medfn.explain.image import image_explanation
        from medfn.explain.overlay import OVERLAY_MAX_SIDE

        inputs, context = self.prepare(payload)
        prediction, method, values, extra = self.saliency(inputs, context, payload)
        image: DecodedImage = context[0]
        return image_explanation(
            prediction,
            method,
            values,
            image.pixels,
            self.config.preprocessing,
            extra,
            absolute=method == "probability-map",
            max_side=int(self.config.explain.get("overlay_max_side", OVERLAY_MAX_SIDE)),
        )

    def saliency(
        self, inputs: dict[str, np.ndarray], context: Any, payload: Payload
    ) -> tuple[Prediction, str, np.ndarray, dict[str, Any]]:
        """(the prediction, the method, a (rows, columns) map over the input grid, the method's
        own details); the image tasks that can say why override this."""
        raise BadRequest(f"model {self.name} (task {self.config.task}) cannot explain its answers")


def _to_color(pixels: np.ndarray, color: str) -> np.ndarray:
    """(H, W, C) with C = 1 for "L", 3 for "RGB" and "BGR" (the same channels, reversed)."""
    if color == "L":
        if pixels.ndim == 3:  # ITU-R 601 luma, as Pillow's convert("L")
            pixels = pixels[..., :3] @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
        return pixels[..., np.newaxis]
    rgb = np.repeat(pixels[..., np.newaxis], 3, axis=-1) if pixels.ndim == 2 else pixels[..., :3]
    return rgb[..., ::-1] if color == "BGR" else rgb
