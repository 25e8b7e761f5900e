"""Reproducible synthetic axial chest CT slices in Hounsfield units, with a lung lesion mask.

Each slice: air outside, a body ellipse (fat rim, soft tissue), two lungs with a gravity-dependent
density gradient and small vessel cross-sections (look-alikes smaller than any lesion), a heart,
a vertebra and rib cross-sections, then one lobulated lesion inside a lung (about 10% of slices
have none). The mask is the lesion inside the lung, sampled at pixel centres; the image draws
the same shape with a partial-volume edge, so the mask boundary sits halfway up that edge.

Shapes live in continuous coordinates ([-1, 1] across the slice, y pointing down = posterior),
drawn from parameters chosen before any pixel exists; each slice has its own random stream,
seeded by (seed, index). The same seed gives the same slices.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.uid import CTImageStorage, generate_uid

from model_store.build import dicom_part10

AIR_HU, FAT_HU, SOFT_TISSUE_HU, LUNG_HU, BONE_HU = -1000.0, -100.0, 40.0, -850.0, 700.0
RESCALE_INTERCEPT = -1024  # stored value = HU + 1024, so air (-1000) is stored as 24
HU_RANGE = (-1024.0, 3071.0)  # what 12 stored bits hold with that intercept
LESION_FREE_FRACTION = 0.1
TRAINING_SIZE = 128  # pixels across a slice in the segmenter's training data


def generate(n: int, seed: int, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """n slices: HU (float32, (n, size, size)) and lesion masks (uint8 0/1, same shape)."""
    hu = np.empty((n, size, size), np.float32)
    masks = np.empty((n, size, size), np.uint8)
    for i in range(n):
        hu[i], masks[i] = _slice(np.random.default_rng((seed, i)), size)
    return hu, masks


def window(hu: np.ndarray, center: float = -600.0, width: float = 1500.0) -> np.ndarray:
    """The DICOM linear VOI function (PS3.3 C.11.2.1.2.1) with output range [0, 1]."""
    if width < 1:
        raise ValueError("window width must be >= 1")
    scaled = (np.asarray(hu, np.float64) - (center - 0.5)) / (width - 1.0) + 0.5
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def to_png(image01: np.ndarray) -> bytes:
    """8-bit grayscale PNG of a windowed [0, 1] image."""
    pixels = np.round(np.clip(image01, 0.0, 1.0) * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def to_dicom(
    hu: np.ndarray,
    *,
    pixel_spacing: tuple[float, float] = (0.7, 0.7),
    patient_name: str = "Doe^Jane",
    patient_id: str = "MRN-0042",
    birth_date: str = "19700101",
) -> bytes:
    """A CT Image Storage Part-10 file: 12-bit unsigned stored values, HU = stored - 1024.

    The file carries a soft-tissue window (40/400) as a reader's default; the segmenter must
    ignore it and apply its own lung window to the HU values.
    """
    stored = np.round(np.clip(hu, *HU_RANGE) - RESCALE_INTERCEPT).astype(np.uint16)
    ds = dicom_part10.new_dataset(
        CTImageStorage, modality="CT", patient_name=patient_name, patient_id=patient_id, birth_date=birth_date
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BodyPartExamined = "CHEST"
    ds.FrameOfReferenceUID = generate_uid()
    ds.KVP = "120"
    ds.SliceThickness = "1.0"
    ds.ImagePositionPatient = ["0", "0", "0"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    dicom_part10.set_pixels(ds, stored, bits_stored=12, photometric="MONOCHROME2", pixel_spacing=pixel_spacing)
    ds.RescaleIntercept = str(RESCALE_INTERCEPT)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    return dicom_part10.to_bytes(ds)


def _inside(distance: np.ndarray, edge: float) -> np.ndarray:
    """Soft indicator of distance < 0 with a logistic edge about `edge` wide."""
    return 0.5 * (1.0 - np.tanh(distance / (2.0 * edge)))


def _radius(x, y, cx, cy, ax, ay, power=2.0):
    """Superellipse 'radius': below 1 inside, 1 on the outline."""
    return (np.abs((x - cx) / ax) ** power + np.abs((y - cy) / ay) ** power) ** (1.0 / power)


def _slice(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    u = rng.uniform
    # --- every parameter first, so that the pixel grid never changes the random stream ---
    body = dict(cx=u(-0.03, 0.03), cy=u(-0.02, 0.06), ax=u(0.80, 0.94), ay=u(0.56, 0.72), power=u(2.0, 2.6))
    fat_rim = u(0.04, 0.10)
    lung_ay, lung_cy = body["ay"] * u(0.62, 0.75), body["cy"] + u(-0.06, 0.02)
    lungs = [
        dict(
            cx=body["cx"] + side * u(0.31, 0.40),
            cy=lung_cy,
            ax=u(0.25, 0.33),
            ay=lung_ay * u(0.93, 1.07),
            power=u(1.8, 2.5),
        )
        for side in (-1.0, 1.0)
    ]
    heart = dict(cx=body["cx"] + u(0.02, 0.15), cy=body["cy"] + u(-0.22, -0.08), ax=u(0.18, 0.26), ay=u(0.16, 0.24))
    spine = dict(cx=body["cx"], cy=body["cy"] + body["ay"] * u(0.62, 0.72), r=u(0.08, 0.11))
    ribs = [(side, u(-0.9, 0.9), u(0.018, 0.03)) for side in (-1, 1) for _ in range(5)]
    tissue_hu, lung_hu = SOFT_TISSUE_HU + u(-15, 15), LUNG_HU + u(-40, 40)
    bone_hu = BONE_HU + u(-100, 150)
    gravity = u(0.0, 120.0)  # dependent (posterior) lung is denser
    vessels = [
        (int(rng.integers(2)), u(0, 2 * np.pi), np.sqrt(u(0, 0.9)), u(0.006, 0.02), u(-200, 60))
        for _ in range(int(rng.integers(6, 20)))
    ]
    lesion = _draw_lesion(rng, lungs, heart) if u() >= LESION_FREE_FRACTION else None
    noise_hu = u(8.0, 35.0)

    # --- pixels ---
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(c, c, indexing="ij")
    edge = 0.5 / size  # partial volume: about half a pixel
    body_r = _radius(x, y, **body)
    hu = AIR_HU + (FAT_HU - AIR_HU) * _inside(body_r - 1.0, edge)
    hu += (tissue_hu - FAT_HU) * _inside(body_r - (1.0 - fat_rim), edge)
    heart_out = 1.0 - _inside(_radius(x, y, **heart) - 1.0, edge)
    lung_soft = sum(_inside(_radius(x, y, **lung) - 1.0, edge) for lung in lungs) * heart_out
    lung_level = lung_hu + gravity * np.clip((y - lung_cy) / lung_ay, -1, 1)
    hu += (lung_level - tissue_hu) * lung_soft
    for lung_index, theta, reach, radius, vessel_hu in vessels:
        lung = lungs[lung_index]
        vx = lung["cx"] + reach * lung["ax"] * np.cos(theta)
        vy = lung["cy"] + reach * lung["ay"] * np.sin(theta)
        vessel = _inside(np.hypot(x - vx, y - vy) - radius, edge)
        hu += (vessel_hu - lung_level) * vessel * lung_soft
    for side, t, radius in ribs:  # just outside the lung, in the chest wall
        lung = lungs[0 if side < 0 else 1]
        angle = np.pi / 2 * t + (0 if side > 0 else np.pi)
        rx = lung["cx"] + 1.12 * lung["ax"] * np.cos(angle)
        ry = lung["cy"] + 1.12 * lung["ay"] * np.sin(angle)
        rib = _inside(np.hypot(x - rx, y - ry) - radius, edge)
        hu += (bone_hu - tissue_hu) * rib * (1 - lung_soft)
    vertebra = _inside(np.hypot(x - spine["cx"], y - spine["cy"]) - spine["r"], edge)
    hu += (bone_hu - tissue_hu) * vertebra

    mask = np.zeros((size, size), np.uint8)
    if lesion is not None:
        # The lesion is what lies inside the lung: clip both the drawing and the mask by it.
        distance = _lesion_distance(x, y, **lesion["shape"])
        lung_hard = lung_soft > 0.5
        hu += (lesion["hu"] - hu) * _inside(distance, edge * lesion["blur"]) * lung_soft
        mask = ((distance < 0) & lung_hard).astype(np.uint8)
    # Quantum noise grows as pixels shrink: its variance goes inversely with the pixel's area, so a
    # slice made at any size and averaged down to the training grid has the training slices' noise.
    hu += rng.normal(0.0, noise_hu * size / TRAINING_SIZE, (size, size))
    # Like a scanner's output: nothing below -1024 HU, so a DICOM file stores it losslessly.
    return np.clip(hu, HU_RANGE[0], HU_RANGE[1]).astype(np.float32), mask


def _draw_lesion(rng: np.random.Generator, lungs: list[dict], heart: dict) -> dict:
    """A lesion centred in a lung, off the heart; about a third of them reach the pleura."""
    lung = lungs[int(rng.integers(2))]
    near_border = rng.uniform() < 0.35
    for _ in range(100):
        theta = rng.uniform(0, 2 * np.pi)
        rho = rng.uniform(0.6, 0.85) if near_border else 0.6 * np.sqrt(rng.uniform())
        cx = lung["cx"] + rho * lung["ax"] * np.cos(theta)
        cy = lung["cy"] + rho * lung["ay"] * np.sin(theta)
        if _radius(cx, cy, **lung) < 0.9 and _radius(cx, cy, **heart) > 1.2:
            break
    shape = dict(
        cx=cx,
        cy=cy,
        radius=rng.uniform(0.05, 0.16),
        lobes=rng.uniform(0.0, 0.2, 3),
        phases=rng.uniform(0, 2 * np.pi, 3),
    )
    return dict(shape=shape, hu=rng.uniform(-300.0, 80.0), blur=rng.uniform(1.0, 3.0))


def _lesion_distance(x, y, cx, cy, radius, lobes, phases):
    """Distance-like field (< 0 inside) of a disc lobulated by 2-, 3- and 5-fold harmonics."""
    dx, dy = x - cx, y - cy
    phi = np.arctan2(dy, dx)
    harmonics = sum(a * np.cos(k * phi + p) for a, k, p in zip(lobes, (2, 3, 5), phases, strict=True))
    return np.hypot(dx, dy) - radius * (1.0 + harmonics)
