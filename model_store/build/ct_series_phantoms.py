"""Reproducible synthetic chest CT series in Hounsfield units, with a lung-nodule label map.

A series is a stack of axial slices through one phantom chest: air outside, a body (fat rim, soft
tissue), two lungs whose cross-section follows a dome from the diaphragm to the apex, with a
gravity-dependent density gradient, a heart (an ellipsoid cut out of the lungs), a descending
aorta, a spine of vertebrae and discs, ribs in the chest wall, vessels as thin curved tubes
running through the lungs in 3D (thinner than the smallest nodule, so that only their course
along the slices tells them from one), and 0-3 nodules: spheres or lobulated ellipsoids of
5-30 mm equivalent diameter, -50 to +60 HU, lying wholly inside a lung.

Everything is drawn in millimetres, from parameters chosen before any voxel exists: the grid
(rows, columns, pixel spacing, slice spacing, slice count) changes what is sampled, never the
anatomy. Edges carry partial volume as wide as the voxel is along the edge's normal, so a
5 mm slice blurs a nodule's top and bottom more than a 1 mm one. The label map marks the voxel
centres that lie inside a nodule, so its boundary sits halfway up the drawn edge.

Each series has its own random stream, seeded by (seed, index). The same arguments give the
same series.

    series = generate(seed=7, index=0, rows=256, cols=256, pixel_spacing=(1.2, 1.2), slices=60)
    series.hu, series.labels, series.spacing_mm, series.nodules
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

AIR_HU, FAT_HU, SOFT_TISSUE_HU, LUNG_HU, BONE_HU, DISC_HU = -1000.0, -100.0, 40.0, -850.0, 650.0, 80.0
HU_RANGE = (-1024.0, 3071.0)  # what 12 stored bits hold with a -1024 intercept
SLICE_SPACINGS_MM = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0)  # reconstructions scanners offer
NODULE_COUNTS, NODULE_COUNT_P = (0, 1, 2, 3), (0.15, 0.4, 0.3, 0.15)
NODULE_DIAMETER_MM = (5.0, 30.0)  # equivalent diameter: a sphere's of the same volume
NODULE_HU = (-50.0, 60.0)
VESSEL_RADIUS_MM = (0.6, 1.75)  # at most 3.5 mm across, under the smallest nodule's 5 mm
REFERENCE_VOXEL_MM3 = 0.7 * 0.7 * 1.25  # the noise level is drawn for this voxel; it scales with 1/sqrt(volume)


@dataclass(frozen=True)
class Nodule:
    """One nodule's truth: `label` is its value in the label map."""

    label: int
    center_mm: tuple[float, float, float]  # (z, y, x) in the series' frame: z of slice 0 is 0
    center_voxel: tuple[float, float, float]  # (slice, row, column), fractional
    diameter_mm: float  # equivalent diameter (of the sphere of the analytic volume)
    hu: float
    volume_ml: float  # label-map voxels x voxel volume
    volume_ml_analytic: float  # the drawn shape's own volume, whatever the grid
    longest_axial_diameter_mm: float  # on the label map, edge to edge (see longest_axial_diameter_mm)
    slice_range: tuple[int, int]  # first and last slice of the label map that hold it


class Series(NamedTuple):
    hu: np.ndarray  # (slices, rows, cols) float32
    labels: np.ndarray  # (slices, rows, cols) uint8: 0 background, k for nodule k
    spacing_mm: tuple[float, float, float]  # (between slices, between rows, between columns)
    nodules: list[Nodule]


def generate(
    seed: int,
    index: int = 0,
    *,
    rows: int = 512,
    cols: int = 512,
    pixel_spacing: tuple[float, float] = (0.7, 0.7),
    slice_spacing: float | None = None,
    slices: int | None = None,
    nodules: int | None = None,
    noise: float = 1.0,
    slab_at: float | None = None,
) -> Series:
    """One series. `slice_spacing` None: drawn from SLICE_SPACINGS_MM; `slices` None: enough to
    cover both lungs with a margin, else a slab centred about a nodule, or at `slab_at` (a fraction
    of the lungs' height, 0 at the bases, 1 at the apices); `nodules` None: 0-3 at random (a
    number asks for that many, as many as fit wholly inside the series); `noise` scales the
    quantum noise (0: none)."""
    rng = np.random.default_rng((seed, index))
    chest = _chest(rng)
    drawn_spacing = float(rng.choice(SLICE_SPACINGS_MM))
    count = int(rng.choice(NODULE_COUNTS, p=NODULE_COUNT_P))
    candidates = [_nodule_parameters(rng, chest) for _ in range(3)]
    window_jitter = rng.uniform()
    noise_hu = rng.uniform(10.0, 30.0) * noise
    dz = float(slice_spacing or drawn_spacing)
    if dz <= 0:
        raise ValueError("slice spacing must be > 0")
    n_slices = int(slices or np.ceil((chest["lung_height"] + 40.0) / dz))
    extent = (n_slices - 1) * dz
    if slices is None:
        z0 = -20.0
    else:  # a slab: placed about the first candidate nodule, so that slabs usually hold one
        target = candidates[0]["center"][0] if slab_at is None else slab_at * chest["lung_height"]
        z0 = (target if np.isfinite(target) else chest["lung_height"] / 2) - extent * (0.2 + 0.6 * window_jitter)
    z = z0 + dz * np.arange(n_slices)
    chosen = _fit_nodules(candidates[: count if nodules is None else min(nodules, 3)], z, rows, cols, pixel_spacing)
    return _render(rng, chest, chosen, z, rows, cols, pixel_spacing, dz, noise_hu)


def generate_many(n: int, seed: int, **grid: Any) -> Iterator[Series]:
    """Series index 0..n-1 of one seed, one at a time (a training set need not fit in memory)."""
    for index in range(n):
        yield generate(seed, index, **grid)


def volume(series: Series) -> Any:
    """The series as the pipeline hands it to a model (medfn.studies.volume.Volume): axial slices,
    slice 0 at z = 0, no source instances."""
    from medfn.studies.volume import Volume

    dz, row_mm, col_mm = series.spacing_mm
    count = len(series.hu)
    positions = np.column_stack([np.zeros(count), np.zeros(count), np.arange(count) * dz])
    return Volume(
        hu=series.hu,
        spacing_mm=series.spacing_mm,
        orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        positions=positions,
        frames=(),
        datasets=(),
        study_instance_uid="",
        series_instance_uid="",
    )


def window(hu: np.ndarray, center: float = -600.0, width: float = 1500.0) -> np.ndarray:
    """HU to [0, 1] through a linear window, for looking at a series."""
    return np.clip((np.asarray(hu, np.float32) - (center - width / 2)) / width, 0.0, 1.0)


def longest_axial_diameter_mm(mask: np.ndarray, row_mm: float, col_mm: float) -> float:
    """The longest in-plane extent of a 3D mask on any one slice, in mm: the longest distance
    between two of its pixel centres on one slice, plus one pixel (half a pixel beyond each
    centre: edge to edge). Every pair of the pixels that end their rows is compared."""
    best = -1.0
    for plane in mask:
        ends: dict[int, tuple[int, int]] = {}
        for row, col in zip(*np.nonzero(plane), strict=True):
            low, high = ends.get(int(row), (int(col), int(col)))
            ends[int(row)] = (min(low, int(col)), max(high, int(col)))
        points = np.array([(row * row_mm, col * col_mm) for row, pair in ends.items() for col in pair])
        if len(points):
            best = max(best, float(np.sqrt(((points[:, None] - points[None]) ** 2).sum(axis=-1)).max()))
    return best + (row_mm + col_mm) / 2 if best >= 0 else 0.0


# -- anatomy ---------------------------------------------------------------------------------------


def _chest(rng: np.random.Generator) -> dict[str, Any]:
    """Every anatomical parameter, in mm: x to the patient's left, y posterior, z up from the
    lung bases (z = 0) to the apices (z = lung_height)."""
    u = rng.uniform
    body = dict(cx=u(-8, 8), cy=u(-5, 12), ax=u(140, 172), ay=u(95, 122), power=u(2.0, 2.6))
    lung_ay = body["ay"] * u(0.62, 0.74)
    lung_cy = body["cy"] + u(-8, 2)
    lungs = [
        dict(
            cx=body["cx"] + side * body["ax"] * u(0.37, 0.44),
            cy=lung_cy,
            ax=body["ax"] * u(0.29, 0.35),
            ay=lung_ay * u(0.93, 1.07),
            power=u(1.8, 2.4),
        )
        for side in (-1.0, 1.0)
    ]
    height = u(200, 260)
    heart = dict(
        cx=body["cx"] + u(5, 30),
        cy=body["cy"] + u(-45, -25),
        ax=u(45, 62),
        ay=u(40, 55),
        cz=height * u(0.18, 0.26),
        az=u(50, 62),
    )
    spine = dict(cx=body["cx"], cy=body["cy"] + body["ay"] * u(0.62, 0.70), r=u(17, 22), phase=u(0, 30))
    aorta = dict(cx=body["cx"] + u(18, 26), cy=spine["cy"] - u(22, 30), r=u(10, 14))
    ribs = [(side, u(-0.85, 0.85), u(3.5, 6.0), u(0, 2 * np.pi)) for side in (-1, 1) for _ in range(6)]
    vessels = [_vessel(rng, side) for side in (0, 1) for _ in range(int(rng.integers(18, 33)))]
    return dict(
        body=body,
        fat_rim=u(8, 20),
        lungs=lungs,
        lung_height=height,
        heart=heart,
        spine=spine,
        aorta=aorta,
        ribs=ribs,
        vessels=vessels,
        tissue_hu=SOFT_TISSUE_HU + u(-15, 15),
        lung_hu=LUNG_HU + u(-40, 40),
        bone_hu=BONE_HU + u(-100, 150),
        gravity=u(0.0, 120.0),  # the dependent (posterior) lung is denser
    )


def _vessel(rng: np.random.Generator, lung: int) -> dict[str, Any]:
    """A tube along z from za to zb (fractions of the lung height), drifting across the lung."""
    u = rng.uniform
    za = u(0.03, 0.8)
    return dict(
        lung=lung,
        za=za,
        zb=min(0.97, za + u(0.15, 0.6)),
        rho=(u(0.1, 0.85), u(0.1, 0.85)),
        theta=(u(0, 2 * np.pi), u(-1.2, 1.2)),
        wiggle=(u(0.0, 0.25), u(1.0, 3.0), u(0, 2 * np.pi)),
        radius=u(*VESSEL_RADIUS_MM),
        hu=u(-100.0, 60.0),
    )


def _lung_scale(u: np.ndarray | float) -> np.ndarray:
    """Cross-section of a lung against its full size, from the base (u = 0) to the apex (u = 1)."""
    u = np.asarray(u, np.float64)
    base = np.clip(1.0 - ((0.45 - u) / 0.45) ** 6, 0.0, 1.0)
    apex = np.clip(1.0 - ((u - 0.45) / 0.55) ** 2, 0.0, 1.0)
    return np.sqrt(np.where(u < 0.45, base, apex) * ((u > 0) & (u < 1)))


def _heart_scale(z: np.ndarray | float, heart: dict[str, Any]) -> np.ndarray:
    """In-plane scale of the heart at z: a superellipsoid, steep at its top and bottom."""
    t = np.abs((np.asarray(z, np.float64) - heart["cz"]) / heart["az"])
    return np.clip(1.0 - t**4, 0.0, 1.0) ** 0.25


def _superellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float, power: float) -> np.ndarray:
    """Below 1 inside, 1 on the outline."""
    return (np.abs((x - cx) / ax) ** power + np.abs((y - cy) / ay) ** power) ** (1.0 / power)


def _lung_at(lung: dict[str, Any], scale: float) -> dict[str, float]:
    return dict(cx=lung["cx"], cy=lung["cy"], ax=lung["ax"] * scale, ay=lung["ay"] * scale, power=lung["power"])


def _in_lung(
    chest: dict[str, Any], z: np.ndarray, y: np.ndarray, x: np.ndarray, side: int, margin: float
) -> np.ndarray:
    """Points that lie inside lung `side`, off the heart, with room to spare (radius < margin)."""
    lung = chest["lungs"][side]
    scale = _lung_scale(z / chest["lung_height"])
    with np.errstate(divide="ignore"):
        radius = _superellipse(x, y, lung["cx"], lung["cy"], lung["ax"] * scale, lung["ay"] * scale, lung["power"])
    heart = chest["heart"]
    h_scale = _heart_scale(z, heart)
    with np.errstate(divide="ignore", invalid="ignore"):
        h_radius = np.hypot((x - heart["cx"]) / (heart["ax"] * h_scale), (y - heart["cy"]) / (heart["ay"] * h_scale))
    off_heart = np.where(h_scale > 0, h_radius > 1.08, True)
    return (scale > 0.3) & (radius < margin) & off_heart


# -- nodules ---------------------------------------------------------------------------------------


def _nodule_parameters(rng: np.random.Generator, chest: dict[str, Any]) -> dict[str, Any]:
    """A nodule wholly inside a lung (checked on points just outside its outline); its centre is NaN
    where 64 tries found no room (it is then never drawn)."""
    u = rng.uniform
    diameter = u(*NODULE_DIAMETER_MM)
    lobulated = u() < 0.6
    scales = np.exp(rng.normal(0.0, 0.12, 3)) if lobulated else np.ones(3)
    scales /= np.prod(scales) ** (1 / 3)  # the same volume as the sphere before lobulation
    lobes = u(0.0, 0.12, 3) if lobulated else np.zeros(3)
    phases = u(0, 2 * np.pi, 2)
    rotation = _rotation(rng.normal(size=4))
    shape = dict(scales=scales, lobes=lobes, phases=phases, rotation=rotation)
    r0 = diameter / 2 / _mean_cube_root(lobes, phases)  # the lobulated shape keeps the equivalent diameter
    side, height = int(rng.integers(2)), chest["lung_height"]
    trials = np.column_stack([u(0.2, 0.75, 64) * height, u(0, 2 * np.pi, 64), np.sqrt(u(0, 1, 64)) * 0.8])
    hu, blur = u(*NODULE_HU), u(1.0, 2.0)  # blur: the scanner's own softness on top of partial volume
    reach = r0 * (1.0 + lobes.sum()) * scales.max() + 2.0
    directions = _sphere_points(48)
    lung = chest["lungs"][side]
    for cz, theta, rho in trials:
        scale = float(_lung_scale(cz / height))
        cy = lung["cy"] + rho * lung["ay"] * scale * np.sin(theta)
        cx = lung["cx"] + rho * lung["ax"] * scale * np.cos(theta)
        points = np.array([cz, cy, cx]) + reach * directions
        if _in_lung(chest, points[:, 0], points[:, 1], points[:, 2], side, 0.95).all():
            return dict(center=(float(cz), float(cy), float(cx)), r0=r0, reach=reach, hu=hu, blur=blur, **shape)
    return dict(center=(np.nan, np.nan, np.nan), r0=r0, reach=reach, hu=hu, blur=blur, **shape)


def _fit_nodules(
    candidates: list[dict[str, Any]], z: np.ndarray, rows: int, cols: int, pixel_spacing: tuple[float, float]
) -> list[dict[str, Any]]:
    """The candidates that lie wholly inside the series and apart from each other."""
    half_y, half_x = rows * pixel_spacing[0] / 2, cols * pixel_spacing[1] / 2
    chosen: list[dict[str, Any]] = []
    for nodule in candidates:
        cz, cy, cx = nodule["center"]
        reach = nodule["reach"]
        if not np.isfinite(cz) or cz - reach < z[0] or cz + reach > z[-1]:
            continue
        if abs(cy) + reach > half_y or abs(cx) + reach > half_x:
            continue
        if any(np.linalg.norm(np.subtract(nodule["center"], o["center"])) < reach + o["reach"] + 2 for o in chosen):
            continue
        chosen.append(nodule)
    return chosen


def _rotation(q: np.ndarray) -> np.ndarray:
    a, b, c, d = q / np.linalg.norm(q)
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def _sphere_points(n: int) -> np.ndarray:
    """n nearly even directions (a Fibonacci sphere), as (z, y, x) unit vectors."""
    k = np.arange(n) + 0.5
    polar, azimuth = np.arccos(1 - 2 * k / n), np.pi * (1 + 5**0.5) * k
    return np.column_stack([np.cos(polar), np.sin(polar) * np.sin(azimuth), np.sin(polar) * np.cos(azimuth)])


def _lobulation(cos_polar: np.ndarray, azimuth: np.ndarray, lobes: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """Relative change of the radius with direction: 2- and 3-fold about the axis, and a polar bulge."""
    sin_polar = np.sqrt(np.clip(1 - cos_polar**2, 0, 1))
    return (
        lobes[0] * np.cos(2 * azimuth + phases[0]) * sin_polar**2
        + lobes[1] * np.cos(3 * azimuth + phases[1]) * sin_polar**3
        + lobes[2] * (1.5 * cos_polar**2 - 0.5)
    )


def _mean_cube_root(lobes: np.ndarray, phases: np.ndarray) -> float:
    """(mean over directions of (1 + lobulation)^3)^(1/3): the volume's scale against a sphere."""
    cos_polar, azimuth = np.meshgrid(np.linspace(-1, 1, 401)[:-1] + 1 / 400, np.linspace(0, 2 * np.pi, 401)[:-1])
    return float(np.mean((1 + _lobulation(cos_polar, azimuth, lobes, phases)) ** 3) ** (1 / 3))


def analytic_volume_ml(nodule: dict[str, Any]) -> float:
    """The volume of a drawn nodule, integrated over directions (midpoint rule in cos(polar), azimuth)."""
    r0 = nodule["r0"] * _mean_cube_root(nodule["lobes"], nodule["phases"])
    return float(4 / 3 * np.pi * r0**3 * np.prod(nodule["scales"]) / 1000.0)


def _nodule_field(nodule: dict[str, Any], dz: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Distance-like field in mm (< 0 inside) at offsets (dz, dy, dx) from the centre."""
    local = np.einsum("ij,j...->i...", nodule["rotation"].T, np.stack([dz, dy, dx])) / nodule["scales"][:, None, None]
    rho = np.sqrt((local**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos_polar = np.where(rho > 0, local[0] / rho, 1.0)
    azimuth = np.arctan2(local[1], local[2])
    return rho - nodule["r0"] * (1.0 + _lobulation(cos_polar, azimuth, nodule["lobes"], nodule["phases"]))


# -- voxels ----------------------------------------------------------------------------------------


def _inside(distance: np.ndarray, edge: np.ndarray | float) -> np.ndarray:
    """Soft indicator of distance < 0 whose logistic edge is about `edge` wide."""
    return np.asarray(0.5 * (1.0 - np.tanh(distance / (2.0 * np.asarray(edge)))), np.float32)


def _edge(nz: np.ndarray | float, ny: np.ndarray, nx: np.ndarray, voxel: tuple[float, float, float]) -> np.ndarray:
    """Partial volume along the unit normal (nz, ny, nx): a quarter of the voxel's extent along it,
    so that the soft edge rises as steeply as a box voxel's inside share does."""
    return np.asarray(0.25 * np.sqrt((nz * voxel[0]) ** 2 + (ny * voxel[1]) ** 2 + (nx * voxel[2]) ** 2), np.float32)


def _box(center: tuple[float, float], half: float, ys: np.ndarray, xs: np.ndarray) -> tuple[slice, slice]:
    """Rows and columns whose centres lie within `half` mm of center (y, x)."""
    r = np.searchsorted(ys, [center[0] - half, center[0] + half])
    c = np.searchsorted(xs, [center[1] - half, center[1] + half])
    return slice(int(r[0]), int(r[1])), slice(int(c[0]), int(c[1]))


def _render(
    rng: np.random.Generator,
    chest: dict[str, Any],
    nodules: list[dict[str, Any]],
    z: np.ndarray,
    rows: int,
    cols: int,
    pixel_spacing: tuple[float, float],
    dz: float,
    noise_hu: float,
) -> Series:
    row_mm, col_mm = (float(v) for v in pixel_spacing)
    voxel = (dz, row_mm, col_mm)
    ys = ((np.arange(rows) + 0.5 - rows / 2) * row_mm).astype(np.float32)
    xs = ((np.arange(cols) + 0.5 - cols / 2) * col_mm).astype(np.float32)
    y, x = np.meshgrid(ys, xs, indexing="ij")
    in_plane = 0.25 * max(row_mm, col_mm)  # a pixel's partial volume (see _edge)
    body, spine, aorta = chest["body"], chest["spine"], chest["aorta"]

    # What every slice shares: body, fat rim, aorta; the spine's column (bone or disc by z).
    body_r = _superellipse(x, y, **body)
    base = AIR_HU + (FAT_HU - AIR_HU) * _inside((body_r - 1.0) * body["ay"], in_plane)
    base += (chest["tissue_hu"] - FAT_HU) * _inside((body_r - 1.0) * body["ay"] + chest["fat_rim"], in_plane)
    vertebra = _inside(np.hypot(x - spine["cx"], y - spine["cy"]) - spine["r"], in_plane)
    aorta_in = _inside(np.hypot(x - aorta["cx"], y - aorta["cy"]) - aorta["r"], in_plane)
    base += (SOFT_TISSUE_HU + 10.0 - chest["tissue_hu"]) * aorta_in

    hu = np.empty((len(z), rows, cols), np.float32)
    labels = np.zeros((len(z), rows, cols), np.uint8)
    sigma = noise_hu * np.sqrt(REFERENCE_VOXEL_MM3 / (dz * row_mm * col_mm))
    for k, zk in enumerate(z):
        plane = base.copy()
        lung_soft = _lungs(plane, chest, float(zk), x, y, ys, xs, voxel)
        for vessel in chest["vessels"]:
            _draw_vessel(plane, lung_soft, chest, vessel, float(zk), y, x, ys, xs, voxel)
        for label, nodule in enumerate(nodules, start=1):
            _draw_nodule(plane, labels[k], lung_soft, nodule, label, float(zk), y, x, ys, xs, voxel)
        disc = abs((zk + spine["phase"]) % 30.0 - 15.0) < 3.0  # a disc every 30 mm between vertebrae
        plane += ((DISC_HU if disc else chest["bone_hu"]) - chest["tissue_hu"]) * vertebra
        _ribs(plane, lung_soft, chest, float(zk), y, x, ys, xs, in_plane)
        if sigma > 0:
            plane += rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(sigma)
        np.clip(plane, *HU_RANGE, out=hu[k])

    truths = []
    for label, nodule in enumerate(nodules, start=1):
        mask = labels == label
        if not mask.any():
            continue
        where = np.nonzero(mask.any(axis=(1, 2)))[0]
        cz, cy, cx = nodule["center"]
        analytic = analytic_volume_ml(nodule)
        truths.append(
            Nodule(
                label=label,
                center_mm=(float(cz - z[0]), float(cy), float(cx)),
                center_voxel=(
                    float((cz - z[0]) / dz),
                    float(cy / row_mm + rows / 2 - 0.5),
                    float(cx / col_mm + cols / 2 - 0.5),
                ),
                diameter_mm=float(2 * (analytic * 1000 * 3 / (4 * np.pi)) ** (1 / 3)),
                hu=float(nodule["hu"]),
                volume_ml=float(mask.sum() * dz * row_mm * col_mm / 1000.0),
                volume_ml_analytic=analytic,
                longest_axial_diameter_mm=longest_axial_diameter_mm(mask[where[0] : where[-1] + 1], row_mm, col_mm),
                slice_range=(int(where[0]), int(where[-1])),
            )
        )
    return Series(hu, labels, (dz, row_mm, col_mm), truths)


def _lungs(
    plane: np.ndarray,
    chest: dict[str, Any],
    z: float,
    x: np.ndarray,
    y: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    voxel: tuple[float, float, float],
) -> np.ndarray:
    """Draw both lungs (less the heart) into plane; return the soft lung indicator."""
    lung_soft = np.zeros(plane.shape, np.float32)
    scale = float(_lung_scale(z / chest["lung_height"]))
    if scale <= 0:
        return lung_soft
    # Where the lung's outline moves fast along z (its dome), the slice's thickness blurs it.
    ds = float(_lung_scale((z + 0.5) / chest["lung_height"]) - _lung_scale((z - 0.5) / chest["lung_height"]))
    heart = chest["heart"]
    h_scale = float(_heart_scale(z, heart))
    for lung in chest["lungs"]:
        shape = _lung_at(lung, scale)
        rr, cc = _box((shape["cy"], shape["cx"]), max(shape["ax"], shape["ay"]) + 5.0, ys, xs)
        radius = _superellipse(x[rr, cc], y[rr, cc], **shape)
        normal_tilt = abs(ds) / max(scale, 1e-3) * max(shape["ax"], shape["ay"])  # mm of outline per mm of z
        edge = 0.25 * np.hypot(max(voxel[1], voxel[2]), voxel[0] * min(normal_tilt, 10.0))
        lung_soft[rr, cc] = np.maximum(lung_soft[rr, cc], _inside((radius - 1.0) * shape["ay"], edge))
    if h_scale > 0:
        h_radius = np.hypot((x - heart["cx"]) / (heart["ax"] * h_scale), (y - heart["cy"]) / (heart["ay"] * h_scale))
        lung_soft *= 1.0 - _inside((h_radius - 1.0) * heart["ay"] * h_scale, 0.25 * max(voxel[1], voxel[2]))
    lung = chest["lungs"][0]
    level = chest["lung_hu"] + chest["gravity"] * np.clip((y - lung["cy"]) / lung["ay"], -1, 1)
    plane += (level - chest["tissue_hu"]) * lung_soft
    return lung_soft


def _draw_vessel(
    plane: np.ndarray,
    lung_soft: np.ndarray,
    chest: dict[str, Any],
    vessel: dict[str, Any],
    z: float,
    y: np.ndarray,
    x: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    voxel: tuple[float, float, float],
) -> None:
    height = chest["lung_height"]
    za, zb = vessel["za"] * height, vessel["zb"] * height
    if not za <= z <= zb:
        return
    here = _vessel_point(chest, vessel, z)
    ahead = _vessel_point(chest, vessel, z + 0.5)
    behind = _vessel_point(chest, vessel, z - 0.5)
    if here is None or ahead is None or behind is None:
        return
    ty, tx = np.clip(ahead[0] - behind[0], -3, 3), np.clip(ahead[1] - behind[1], -3, 3)  # mm across per mm up
    t = (z - za) / max(zb - za, 1e-6)
    radius = vessel["radius"] * (1.0 - 0.4 * t)  # tapering towards the periphery
    half = radius * float(np.sqrt(1 + ty * ty + tx * tx)) + 3.0 * max(voxel[1:]) + 1.0
    rr, cc = _box(here, half, ys, xs)
    if rr.start >= rr.stop or cc.start >= cc.stop:
        return
    vy, vx = y[rr, cc] - here[0], x[rr, cc] - here[1]
    norm = float(np.sqrt(1 + ty * ty + tx * tx))
    along = (vy * ty + vx * tx) / norm  # the offset's component along the axis (dz of the offset is 0)
    perp_z, perp_y, perp_x = -along / norm, vy - along * ty / norm, vx - along * tx / norm
    distance = np.sqrt(perp_z**2 + perp_y**2 + perp_x**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        nz, ny, nx = (np.where(distance > 0, v / distance, 0.0) for v in (perp_z, perp_y, perp_x))
    fill = _inside(distance - radius, _edge(nz, ny, nx, voxel))
    region = plane[rr, cc]
    region += (vessel["hu"] - region) * fill * lung_soft[rr, cc]


def _vessel_point(chest: dict[str, Any], vessel: dict[str, Any], z: float) -> tuple[float, float] | None:
    height = chest["lung_height"]
    scale = float(_lung_scale(z / height))
    if scale <= 0.05:
        return None
    t = (z - vessel["za"] * height) / max((vessel["zb"] - vessel["za"]) * height, 1e-6)
    amplitude, turns, phase = vessel["wiggle"]
    rho = vessel["rho"][0] + (vessel["rho"][1] - vessel["rho"][0]) * t
    theta = vessel["theta"][0] + vessel["theta"][1] * t + amplitude * np.sin(np.pi * turns * t + phase)
    lung = chest["lungs"][vessel["lung"]]
    return (
        lung["cy"] + rho * lung["ay"] * scale * np.sin(theta),
        lung["cx"] + rho * lung["ax"] * scale * np.cos(theta),
    )


def _draw_nodule(
    plane: np.ndarray,
    labels: np.ndarray,
    lung_soft: np.ndarray,
    nodule: dict[str, Any],
    label: int,
    z: float,
    y: np.ndarray,
    x: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    voxel: tuple[float, float, float],
) -> None:
    cz, cy, cx = nodule["center"]
    reach = nodule["reach"]
    if abs(z - cz) > reach + voxel[0]:
        return
    rr, cc = _box((cy, cx), reach + 2 * max(voxel[1:]), ys, xs)
    dy, dx = y[rr, cc] - cy, x[rr, cc] - cx
    dz = np.full(dy.shape, z - cz, np.float32)
    distance = _nodule_field(nodule, dz, dy, dx)
    length = np.sqrt(dz**2 + dy**2 + dx**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        nz, ny, nx = (np.where(length > 0, v / length, 0.0) for v in (dz, dy, dx))
    fill = _inside(distance, _edge(nz, ny, nx, voxel) * nodule["blur"])
    region = plane[rr, cc]
    region += (nodule["hu"] - region) * fill * lung_soft[rr, cc]
    inside = (distance < 0) & (lung_soft[rr, cc] > 0.5)
    labels[rr, cc][inside] = label


def _ribs(
    plane: np.ndarray,
    lung_soft: np.ndarray,
    chest: dict[str, Any],
    z: float,
    y: np.ndarray,
    x: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    edge: float,
) -> None:
    """Rib cross-sections just outside the lungs, their angle drifting with z, with gaps between ribs."""
    scale = max(float(_lung_scale(z / chest["lung_height"])), 0.6)
    for side, t, radius, phase in chest["ribs"]:
        if np.sin(2 * np.pi * z / 28.0 + phase) < -0.3:
            continue
        lung = chest["lungs"][0 if side < 0 else 1]
        angle = np.pi / 2 * (t + 0.002 * z) + (0 if side > 0 else np.pi)
        rx = lung["cx"] + (1.12 * lung["ax"] * scale + radius) * np.cos(angle)
        ry = lung["cy"] + (1.12 * lung["ay"] * scale + radius) * np.sin(angle)
        rr, cc = _box((ry, rx), radius + 4 * edge + 1.0, ys, xs)
        rib = _inside(np.hypot(x[rr, cc] - rx, y[rr, cc] - ry) - radius, edge)
        plane[rr, cc] += (chest["bone_hu"] - chest["tissue_hu"]) * rib * (1 - lung_soft[rr, cc])
