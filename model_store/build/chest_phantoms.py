"""Reproducible synthetic chest radiograph (PA view) phantoms, with or without a focal opacity.

Displayed like MONOCHROME2: dense things (body, mediastinum, heart, ribs, spine) are bright,
aerated lungs are dark. Label 1 ("opacity") adds one soft-edged, round-ish bright blob inside a
lung field; label 0 ("clear") does not. Anatomy, pose, exposure and noise vary so that the task
needs a learned detector, while small vessel shadows act as look-alikes that are smaller and
fainter than any opacity.

Every shape is drawn in continuous coordinates ([-1, 1] across the image, y pointing down) from
parameters drawn before any pixel exists, so the same seed at size 256 is the same patient as at
size 128, only sharper. Each image has its own random stream, seeded by (seed, index).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.uid import DigitalXRayImageStorageForPresentation

from model_store.build import dicom_part10

LABELS = ("clear", "opacity")
FIELD_OF_VIEW_MM = 400.0  # a typical PA chest detector width; gives PixelSpacing


def generate(n: int, seed: int, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """n phantoms (float32, (n, size, size), in [0, 1]) and labels (int64, 0 clear / 1 opacity)."""
    images, labels, _ = generate_with_masks(n, seed, size)
    return images, labels


def generate_with_masks(n: int, seed: int, size: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`generate`'s phantoms and labels, and where each opacity lies: masks (bool, (n, size, size)),
    the pixels inside the nodule's outline (the half-way point of its soft edge); all False for a
    clear phantom. The same seed gives the same images as `generate`."""
    # Exactly balanced: half of each label, in a seed-dependent order.
    labels = np.random.default_rng(seed).permutation(np.arange(n) % 2).astype(np.int64)
    images = np.empty((n, size, size), np.float32)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        images[i], masks[i] = _phantom(np.random.default_rng((seed, i)), size, bool(labels[i]))
    return images, labels, masks


def to_png(image: np.ndarray) -> bytes:
    """8-bit grayscale PNG of a [0, 1] image."""
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def to_dicom(
    image: np.ndarray,
    *,
    patient_name: str = "Doe^Jane",
    patient_id: str = "MRN-0042",
    birth_date: str = "19700101",
    monochrome1: bool = False,
    bits: int = 12,
) -> bytes:
    """A Digital X-Ray (for presentation) Part-10 file whose VOI window reproduces `image`.

    Stored values are round(image * (2**bits - 1)). With WindowWidth = 2**bits and
    WindowCenter = 2**(bits - 1), the linear VOI function of PS3.3 C.11.2.1.2.1 maps stored 0
    to 0 and stored 2**bits - 1 to 1, i.e. back to `image`. MONOCHROME1 stores inverted values
    (bright = low), so a reader must window, then invert.
    """
    if not 8 <= bits <= 16:
        raise ValueError("bits must be between 8 and 16")
    top = (1 << bits) - 1
    stored = np.round(np.clip(image, 0.0, 1.0) * top).astype(np.uint16)
    if monochrome1:
        stored = (top - stored).astype(np.uint16)

    ds = dicom_part10.new_dataset(
        DigitalXRayImageStorageForPresentation,
        modality="DX",
        patient_name=patient_name,
        patient_id=patient_id,
        birth_date=birth_date,
    )
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    spacing = FIELD_OF_VIEW_MM / image.shape[0]
    dicom_part10.set_pixels(
        ds,
        stored,
        bits_stored=bits,
        pixel_spacing=(spacing, spacing),
        photometric="MONOCHROME1" if monochrome1 else "MONOCHROME2",
    )
    ds.ImagerPixelSpacing = ds.PixelSpacing
    ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.WindowCenter = str(1 << (bits - 1))
    ds.WindowWidth = str(1 << bits)
    return dicom_part10.to_bytes(ds)


def _inside(distance: np.ndarray, edge: float) -> np.ndarray:
    """Soft indicator of distance < 0: a logistic edge `edge` wide (in grid units)."""
    return 0.5 * (1.0 - np.tanh(distance / (2.0 * edge)))


def _ellipse_radius(x, y, cx, cy, ax, ay, power=2.0, taper=0.0):
    """Superellipse 'radius' (1 on the outline); taper > 0 widens it towards +y (the base)."""
    dy = (y - cy) / ay
    half_width = ax * (1.0 + taper * np.clip(dy, -1.0, 1.0))
    return (np.abs((x - cx) / half_width) ** power + np.abs(dy) ** power) ** (1.0 / power)


def _phantom(rng: np.random.Generator, size: int, opacity: bool) -> tuple[np.ndarray, np.ndarray]:
    """The image, and the opacity's mask (drawing it takes nothing from the random stream)."""
    u = rng.uniform
    # --- every parameter first, so that the pixel grid never changes the random stream ---
    angle, shift = np.deg2rad(u(-6, 6)), u(-0.05, 0.05, 2)
    body = dict(cx=0.0, cy=u(0.0, 0.1), ax=u(0.80, 0.95), ay=u(0.95, 1.15), power=u(2.0, 3.0))
    body_level, lung_drop = u(0.55, 0.72), u(0.28, 0.42)
    lung_cy, lung_ax, lung_ay = u(-0.12, 0.0), u(0.22, 0.30), u(0.50, 0.62)
    lungs = [
        dict(
            cx=side * u(0.34, 0.44),
            cy=lung_cy + u(-0.03, 0.03),
            ax=lung_ax * u(0.9, 1.1),
            ay=lung_ay * u(0.93, 1.07),
            power=u(1.8, 2.6),
            taper=u(0.1, 0.35),
        )
        for side in (-1.0, 1.0)
    ]
    heart = dict(cx=u(0.08, 0.20), cy=u(0.26, 0.38), ax=u(0.28, 0.38), ay=u(0.22, 0.32))
    ribs = dict(
        y0=u(-0.98, -0.85),
        spacing=u(0.14, 0.19),
        width=u(0.018, 0.03),
        slope=u(0.15, 0.4),
        curve=u(0.0, 0.3),
        level=u(0.04, 0.12),
    )
    spine_half, spine_level = u(0.05, 0.09), u(0.04, 0.12)
    vessels = [
        (lungs[int(rng.integers(2))], u(0, 2 * np.pi), u(0.1, 0.9) ** 1.5, u(0.008, 0.022), u(0.03, 0.09))
        for _ in range(int(rng.integers(10, 30)))
    ]
    nodule = _draw_nodule(rng, lungs, heart) if opacity else None
    low, gain, gamma = u(-0.06, 0.08), u(0.9, 1.3), u(0.8, 1.25)
    tilt, tilt_dir = u(0.0, 0.06), u(0, 2 * np.pi)
    noise_sigma = u(0.004, 0.03)

    # --- pixels: rotate and shift the sampling grid, i.e. the patient ---
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0  # pixel centres, so sizes line up
    gy, gx = np.meshgrid(c, c, indexing="ij")
    x = np.cos(angle) * (gx - shift[0]) + np.sin(angle) * (gy - shift[1])
    y = -np.sin(angle) * (gx - shift[0]) + np.cos(angle) * (gy - shift[1])

    body_mask = _inside(_ellipse_radius(x, y, **body) - 1.0, 0.01)
    heart_mask = _inside(_ellipse_radius(x, y, **heart) - 1.0, 0.02)
    lung_mask = sum(_inside(_ellipse_radius(x, y, **lung) - 1.0, 0.015) for lung in lungs)
    lung_mask = lung_mask * (1.0 - heart_mask)

    density = body_level * body_mask - lung_drop * lung_mask
    density += spine_level * _inside(np.abs(x) - spine_half, 0.01) * body_mask
    # Posterior ribs: bands that run down and out from the spine, one set per side.
    rib_y = y - ribs["slope"] * np.abs(x) - ribs["curve"] * x**2 - ribs["y0"]
    phase = np.mod(rib_y, ribs["spacing"]) - ribs["spacing"] / 2
    rib_layer = np.exp(-((phase / ribs["width"]) ** 2)) * (rib_y > -ribs["spacing"] / 2)
    density += ribs["level"] * rib_layer * body_mask
    for lung, theta, reach, sigma, level in vessels:
        hilum = lung["cx"] - np.sign(lung["cx"]) * 0.6 * lung["ax"]  # medial side of the lung
        vx = hilum + reach * lung["ax"] * np.cos(theta)
        vy = lung["cy"] + reach * lung["ay"] * np.sin(theta)
        density += level * np.exp(-((x - vx) ** 2 + (y - vy) ** 2) / (2 * sigma**2)) * lung_mask
    mask = np.zeros((size, size), bool)
    if nodule is not None:
        layer = _nodule_layer(x, y, **nodule)
        density += layer
        mask = layer >= 0.5 * nodule["level"]

    image = np.clip((density - low) * gain + tilt * (x * np.cos(tilt_dir) + y * np.sin(tilt_dir)), 0.0, 1.0) ** gamma
    image += rng.normal(0.0, noise_sigma, (size, size))
    return np.clip(image, 0.0, 1.0).astype(np.float32), mask


def _draw_nodule(rng: np.random.Generator, lungs: list[dict], heart: dict) -> dict:
    """Where and what the opacity is: its centre lies well inside a lung, off the heart."""
    lung = lungs[int(rng.integers(2))]
    for _ in range(100):
        theta, rho = rng.uniform(0, 2 * np.pi), 0.8 * np.sqrt(rng.uniform())
        cx = lung["cx"] + rho * lung["ax"] * np.cos(theta)
        cy = lung["cy"] + rho * lung["ay"] * np.sin(theta)
        inside_lung = _ellipse_radius(cx, cy, **lung) < 0.85
        if inside_lung and _ellipse_radius(cx, cy, **heart) > 1.1:
            break
    return dict(
        cx=cx,
        cy=cy,
        radius=rng.uniform(0.05, 0.15),
        softness=rng.uniform(0.1, 0.35),
        level=rng.uniform(0.1, 0.3),
        lobes=rng.uniform(0, 0.15, 2),
        phases=rng.uniform(0, 2 * np.pi, 2),
    )


def _nodule_layer(x, y, cx, cy, radius, softness, level, lobes, phases):
    """A lobulated disc (radius varies with angle by 2- and 3-fold harmonics), soft edge."""
    dx, dy = x - cx, y - cy
    phi = np.arctan2(dy, dx)
    outline = radius * (1.0 + lobes[0] * np.cos(2 * phi + phases[0]) + lobes[1] * np.cos(3 * phi + phases[1]))
    return level * _inside(np.hypot(dx, dy) - outline, softness * radius / 4.0)
