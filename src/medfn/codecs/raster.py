"""PNG and JPEG through Pillow, with decompression bombs refused before any pixel is decoded."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from medfn.codecs.budget import check_budget
from medfn.codecs.decoded import DecodedImage
from medfn.errors import UnprocessableInput

# Full-range divisor per Pillow mode, so every image lands in [0, 1]. 16-bit PNGs open as "I;16"
# or "I" depending on the Pillow version; both hold 16-bit samples.
_MODE_SCALE = {"1": 1.0, "L": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I": 65535.0, "RGB": 255.0}
# Modes a model cannot take as they are: palette, alpha and other colour spaces.
_CONVERT = {
    "P": "RGB",
    "PA": "RGB",
    "RGBA": "RGB",
    "RGBa": "RGB",
    "RGBX": "RGB",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LA": "L",
    "La": "L",
}


def decode_raster(data: bytes, source: str, max_pixels: int, max_bytes: int) -> DecodedImage:
    try:
        with warnings.catch_warnings():
            # Our own limit below is the guard; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            width, height = image.size  # read from the header; nothing decoded yet
            if width * height > max_pixels:
                raise UnprocessableInput(f"image is {width}x{height} pixels, over the limit of {max_pixels} pixels")
            # a palette or alpha image is converted to RGB: budget what it becomes
            samples = Image.getmodebands(_CONVERT.get(image.mode, image.mode))
            check_budget(width, height, samples, max_bytes, f"{source.upper()} image")
            image.load()
    except UnprocessableInput:
        raise
    except Image.DecompressionBombError as exc:
        raise UnprocessableInput("image is a decompression bomb: refused") from exc
    except UnidentifiedImageError as exc:
        raise UnprocessableInput(f"body is not a decodable {source.upper()} image") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnprocessableInput(f"{source.upper()} image data is truncated or corrupt") from exc

    if image.mode in _CONVERT:
        image = image.convert(_CONVERT[image.mode])
    if image.mode not in _MODE_SCALE:
        raise UnprocessableInput(f"{source.upper()} images in Pillow mode {image.mode!r} are not supported")
    pixels = np.asarray(image, dtype=np.float32) / np.float32(_MODE_SCALE[image.mode])
    np.clip(pixels, 0.0, 1.0, out=pixels)
    return DecodedImage(pixels=pixels, source=source)
