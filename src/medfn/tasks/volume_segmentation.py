"""Volume segmentation: a CT series (medfn.studies.Volume) -> a label map and one finding per
connected component (volume, longest axial diameter, slices, centroid, probability).

The model is 2.5D: each slice is read with its neighbours at fixed distances along the slice
normal (`context_mm`), interpolated from the slices around it, so a 1 mm and a 5 mm series give
the model the same anatomy. In-plane, slices are resampled to the model's pixel spacing (each
model pixel the mean of the area it covers; enlarged bilinearly where the scan is coarser), and
probabilities come back to the series' own grid the same way. The training script imports
`model_grid` and `context_stack` from here, so training and serving cannot drift apart.

No task route takes a volume yet: the series pipeline (medfn.studies) builds the `Volume` and
hands it over in `Payload.volume`. Raw tensors go through `/v2` as for any model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from medfn.codecs.budget import budget_bytes
from medfn.errors import BadRequest, UnprocessableInput
from medfn.serving.model import Model, Payload, Prediction
from medfn.tasks.guards import Guards

# Peak memory a series takes, per voxel of the series: its HU (float32) and its DICOM pixels (the
# Volume keeps both), the components' labels (int32), mask and probabilities (uint8 each), and
# room for the chunks in flight. Per voxel of the model's grid: the windowed volume (float32) and
# the probabilities before they go back to the series' grid (float32).
SOURCE_BYTES_PER_VOXEL = 16
GRID_BYTES_PER_VOXEL = 8
MIN_GRID_PIXELS = 16  # fewer pixels across on the model's grid: nothing to read
RESAMPLE_CHUNK = 16  # slices resampled at once
MAX_FINDINGS = 100  # listed; more are counted in a warning


def resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights along one axis: the mean of the source pixels each output pixel
    covers when shrinking, bilinear (pixel centres aligned, edges clamped) when enlarging."""
    scale = n_in / n_out
    weights = np.zeros((n_out, n_in), np.float64)
    if scale >= 1.0:
        starts = np.arange(n_out) * scale
        edges = np.arange(n_in + 1, dtype=np.float64)
        for i, start in enumerate(starts):  # overlap of [start, start + scale) with each [j, j + 1)
            overlap = np.clip(np.minimum(edges[1:], start + scale) - np.maximum(edges[:-1], start), 0.0, None)
            weights[i] = overlap / scale
    else:
        centres = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0.0, n_in - 1)
        low = np.floor(centres).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        frac = centres - low
        rows = np.arange(n_out)
        np.add.at(weights, (rows, low), 1.0 - frac)
        np.add.at(weights, (rows, high), frac)
    return weights.astype(np.float32)


def grid_shape(rows: int, cols: int, pixel_spacing_mm: tuple[float, float], model_spacing_mm: float) -> tuple[int, int]:
    """The model's grid over the same field of view: rows and columns at about its spacing."""
    return (
        max(1, round(rows * pixel_spacing_mm[0] / model_spacing_mm)),
        max(1, round(cols * pixel_spacing_mm[1] / model_spacing_mm)),
    )


def resample_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """resample_matrix as taps: (taps, n_out) source indices and weights, the few each output uses."""
    weights = resample_matrix(n_in, n_out)
    taps = max(1, int((weights > 0).sum(axis=1).max()))
    order = np.argsort(weights <= 0, axis=1, kind="stable")[:, :taps]  # each row's used sources first
    return order.T.copy(), np.take_along_axis(weights, order, axis=1).T.copy()


def _resample_axis(block: np.ndarray, taps: tuple[np.ndarray, np.ndarray], axis: int) -> np.ndarray:
    indices, weights = taps
    shape = [1, 1, 1]
    shape[axis] = -1
    out: np.ndarray = np.take(block, indices[0], axis=axis) * weights[0].reshape(shape)
    for index, weight in zip(indices[1:], weights[1:], strict=True):
        out += np.take(block, index, axis=axis) * weight.reshape(shape)
    return out


def resample_slices(volume: np.ndarray, shape: tuple[int, int], chunk: int = RESAMPLE_CHUNK) -> np.ndarray:
    """(slices, rows, cols) -> (slices, *shape) float32, a chunk of slices at a time, rows then
    columns (see resample_matrix)."""
    along_rows = resample_taps(volume.shape[1], shape[0])
    along_cols = resample_taps(volume.shape[2], shape[1])
    out = np.empty((volume.shape[0], *shape), np.float32)
    for start in range(0, volume.shape[0], chunk):
        block = np.asarray(volume[start : start + chunk], np.float32)
        out[start : start + chunk] = _resample_axis(_resample_axis(block, along_rows, 1), along_cols, 2)
    return out


def window01(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """HU -> [0, 1] through a linear [center, width] window, in place on a float32 array."""
    center, width = window
    hu -= np.float32(center - width / 2)
    hu *= np.float32(1.0 / width)
    return np.clip(hu, 0.0, 1.0, out=hu)


def model_grid(
    hu: np.ndarray, pixel_spacing_mm: tuple[float, float], model_spacing_mm: float, window: tuple[float, float]
) -> np.ndarray:
    """A series in HU -> what the model reads: resampled in-plane to its spacing, then windowed."""
    shape = grid_shape(hu.shape[1], hu.shape[2], pixel_spacing_mm, model_spacing_mm)
    return window01(resample_slices(hu, shape), window)


def context_stack(
    grid: np.ndarray, slice_spacing_mm: float, context_mm: list[float], indices: np.ndarray
) -> np.ndarray:
    """(len(indices), len(context_mm), h, w): each slice's neighbours at the given distances along
    the normal, linearly interpolated between slices; beyond the ends, the end slice."""
    positions = np.clip(
        np.asarray(indices, np.float64)[:, None] + np.asarray(context_mm, np.float64)[None, :] / slice_spacing_mm,
        0.0,
        grid.shape[0] - 1,
    )
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, grid.shape[0] - 1)
    frac = (positions - low).astype(np.float32)[:, :, None, None]
    return np.asarray(grid[low] * (1.0 - frac) + grid[high] * frac, np.float32)


def longest_axial_diameter_mm(component: np.ndarray, row_mm: float, col_mm: float) -> float:
    """The longest in-plane extent of a component on any one slice, in mm: the longest distance
    between the centres of two of its pixels on one slice, plus one pixel (half a pixel beyond
    each centre, to the edges calipers would be set on).

    The farthest centres end their rows, so only each row's first and last pixel are compared;
    where there are many (a large component), only those on their convex hull.
    """
    from scipy.spatial import ConvexHull  # type: ignore[import-untyped]

    best = 0.0
    for plane in component:
        rows = np.flatnonzero(plane.any(axis=1))
        if rows.size == 0:
            continue
        first = np.argmax(plane[rows], axis=1)
        last = plane.shape[1] - 1 - np.argmax(plane[rows, ::-1], axis=1)
        points = np.column_stack([np.concatenate([rows, rows]) * row_mm, np.concatenate([first, last]) * col_mm])
        if len(points) > 64:
            points = points[ConvexHull(points, qhull_options="QJ").vertices]  # joggled: a line is no error
        delta = points[:, None, :] - points[None, :, :]
        best = max(best, float(np.sqrt((delta**2).sum(axis=-1)).max()))
    return round(best + (row_mm + col_mm) / 2, 2) if component.any() else 0.0


@dataclass
class SeriesPlan:
    """What preprocess found: the model's grid of the series and how to read it back."""

    grid: np.ndarray  # (slices, h, w) windowed
    spacing_mm: tuple[float, float, float]
    source_shape: tuple[int, int, int]
    warnings: list[str]


class VolumeSegmenter(Model):
    """A CT series (Payload.volume) -> label map and findings. Lifecycle as every model's:
    preprocess (resample, window), run (chunks of at most max_batch_size slices), postprocess."""

    details_key = "nodules"

    # -- model.toml --------------------------------------------------------------------------

    def task_problems(self) -> list[str]:
        prep, post = self.config.preprocessing, self.config.postprocessing
        problems = []
        if len(self.config.inputs) != 1 or len(self.config.inputs[0].shape) != 4:
            return ["a volume segmenter takes one input, [N, context, H, W]"]
        spec = self.config.inputs[0]
        if len(self.config.outputs[0].shape) != 4:
            problems.append(f"output {self.config.outputs[0].name!r} must be [N, 1, H, W]")
        if self.config.max_batch_size <= 0:
            problems.append("max_batch_size must be > 0: slices run in chunks of at most that many")
        if self.config.dynamic_batching is not None:
            problems.append("[dynamic_batching] does not apply: one series runs as its own chunks of slices")
        spacing = prep.get("pixel_spacing_mm")
        if not (isinstance(spacing, (int, float)) and not isinstance(spacing, bool) and spacing > 0):
            problems.append("[preprocessing] pixel_spacing_mm must be a number of mm above 0")
        window = prep.get("window")
        if not (isinstance(window, list) and len(window) == 2 and all(isinstance(v, (int, float)) for v in window)):
            problems.append("[preprocessing] window must be [center, width] in HU")
        elif float(window[1]) <= 0:
            problems.append("[preprocessing] window width must be above 0")
        context = prep.get("context_mm")
        if not (isinstance(context, list) and context and all(isinstance(v, (int, float)) for v in context)):
            problems.append("[preprocessing] context_mm must list the neighbours' distances in mm, 0 among them")
        else:
            if 0 not in context:
                problems.append("[preprocessing] context_mm must hold 0 (the slice itself)")
            if (channels := self.known_dim(spec, 1)) not in (None, len(context)):
                problems.append(
                    f"[preprocessing] context_mm has {len(context)} slices; input {spec.name!r} takes {channels}"
                )
        if not (isinstance(prep.get("min_slices", 1), int) and prep.get("min_slices", 1) >= 1):
            problems.append("[preprocessing] min_slices must be a whole number >= 1")
        spacings = prep.get("slice_spacing_mm", [0.0, 1e9])
        if not (isinstance(spacings, list) and len(spacings) == 2 and 0 <= spacings[0] <= spacings[1]):
            problems.append("[preprocessing] slice_spacing_mm must be [low, high] in mm")
        if not 0.0 < float(post.get("threshold", 0.5)) < 1.0:
            problems.append("[postprocessing] threshold must lie between 0 and 1")
        if float(post.get("min_volume_mm3", 0.0)) < 0:
            problems.append("[postprocessing] min_volume_mm3 must be >= 0")
        return problems + Guards(self.config.guards).problems()

    @property
    def _label(self) -> str:
        return str(self.config.postprocessing.get("label", "foreground"))

    # -- raw tensors -----------------------------------------------------------------------

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        super().check_inputs(inputs)
        spec = self.config.inputs[0]
        height, width = inputs[spec.name].shape[2:]
        if min(height, width) < MIN_GRID_PIXELS:
            raise BadRequest(f"input {spec.name!r} must be at least {MIN_GRID_PIXELS} pixels high and wide")

    # -- the series ------------------------------------------------------------------------

    def prepare(self, payload: Payload) -> tuple[dict[str, np.ndarray], Any]:
        """A volume, whatever media type its payload names (the pipeline assembled it)."""
        self.ensure_ready()
        return self.preprocess(payload)

    def preprocess(self, payload: Payload) -> tuple[dict[str, np.ndarray], Any]:
        prep = self.config.preprocessing
        volume = payload.volume
        if volume is None:
            raise UnprocessableInput(
                f"model {self.name} answers about a CT series assembled from its DICOM instances, and this request"
                f" holds none: send the series through the scan pipeline, or tensors to /v2/models/{self.name}/infer"
            )
        hu = volume.hu
        if hu.ndim != 3:
            raise UnprocessableInput(f"a series is (slices, rows, columns); this one has {hu.ndim} axes")
        slices, rows, cols = hu.shape
        least = int(prep.get("min_slices", 1))
        if slices < least:
            raise UnprocessableInput(f"{self.name} needs a series of at least {least} slices; got {slices}")
        dz, row_mm, col_mm = (float(v) for v in volume.spacing_mm)
        if not all(np.isfinite(v) and v > 0 for v in (dz, row_mm, col_mm)):
            raise UnprocessableInput("the series has no usable spacing (between slices, rows and columns)")
        model_mm = float(prep["pixel_spacing_mm"])
        shape = grid_shape(rows, cols, (row_mm, col_mm), model_mm)
        if min(shape) < MIN_GRID_PIXELS:
            raise UnprocessableInput(
                f"slices of {rows}x{cols} pixels ({rows * row_mm:.0f} x {cols * col_mm:.0f} mm) are too small:"
                f" the model reads at least {MIN_GRID_PIXELS * model_mm:.0f} mm across"
            )
        needed = hu.size * SOURCE_BYTES_PER_VOXEL + slices * shape[0] * shape[1] * GRID_BYTES_PER_VOXEL
        budget = budget_bytes(self.memory_mb)
        if needed > budget:
            raise UnprocessableInput(
                f"a series of {slices}x{rows}x{cols} voxels needs about {needed // 2**20} MiB to segment,"
                f" over this function's budget of {budget // 2**20} MiB"
            )
        window = prep["window"]
        grid = model_grid(hu, (row_mm, col_mm), model_mm, (float(window[0]), float(window[1])))
        if not np.isfinite(grid).all():
            raise UnprocessableInput("the series holds values that are not finite numbers")
        return {}, SeriesPlan(grid, (dz, row_mm, col_mm), (slices, rows, cols), self._warnings(volume, model_mm))

    def _warnings(self, volume: Any, model_mm: float) -> list[str]:
        dz, row_mm, col_mm = (float(v) for v in volume.spacing_mm)
        warnings = []
        if max(row_mm, col_mm) > model_mm * 1.01:
            warnings.append(
                f"the slices' pixels ({row_mm:g} x {col_mm:g} mm) are coarser than the {model_mm:g} mm"
                " the model reads; they were enlarged"
            )
        low, high = (float(v) for v in self.config.preprocessing.get("slice_spacing_mm", [0.0, 1e9]))
        if not low <= dz <= high:
            warnings.append(f"slice spacing {dz:g} mm lies outside the {low:g}-{high:g} mm the model was trained on")
        positions = np.asarray(volume.positions, np.float64)
        if positions.ndim == 2 and len(positions) > 2:
            gaps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
            if np.abs(gaps - dz).max() > 0.1 * dz:
                warnings.append(
                    f"slices are unevenly spaced ({gaps.min():.2f}-{gaps.max():.2f} mm apart); volumes assume {dz:g} mm"
                )
        return warnings

    def predict(self, payload: Payload) -> Prediction:
        _, plan = self.prepare(payload)
        started = time.perf_counter()
        probabilities = self.run_series(plan)
        return self.finish({"probabilities": probabilities}, plan, payload, (time.perf_counter() - started) * 1000.0)

    def run_series(self, plan: SeriesPlan) -> np.ndarray:
        """The model over every slice, at most max_batch_size at a time: (slices, h, w) float32."""
        context = [float(v) for v in self.config.preprocessing["context_mm"]]
        name = self.config.inputs[0].name
        output = self.config.postprocessing.get("output", self.config.outputs[0].name)
        slices = plan.grid.shape[0]
        probabilities = np.empty(plan.grid.shape, np.float32)
        step = self.config.max_batch_size
        for start in range(0, slices, step):
            indices = np.arange(start, min(start + step, slices))
            stack = context_stack(plan.grid, plan.spacing_mm[0], context, indices)
            probabilities[indices] = self.run({name: stack}, [output])[output][:, 0]
        return probabilities

    def postprocess(self, outputs: dict[str, np.ndarray], context: Any, payload: Payload) -> Prediction:
        from scipy import ndimage  # type: ignore[import-untyped]

        plan: SeriesPlan = context
        post = self.config.postprocessing
        threshold = float(post.get("threshold", 0.5))
        slices, rows, cols = plan.source_shape
        dz, row_mm, col_mm = plan.spacing_mm
        grid = outputs["probabilities"]
        # Back to the series' grid, chunk by chunk: probabilities kept as bytes (p * 255), the mask beside
        stored = np.empty(plan.source_shape, np.uint8)
        below = 0.0  # the likeliest voxel under the threshold
        for start in range(0, slices, RESAMPLE_CHUNK):
            chunk = resample_slices(grid[start : start + RESAMPLE_CHUNK], (rows, cols))
            under = chunk[chunk < threshold]
            below = max(below, float(under.max(initial=0.0)))
            stored[start : start + RESAMPLE_CHUNK] = np.rint(np.clip(chunk, 0.0, 1.0) * 255.0)
        mask = stored >= np.uint8(np.ceil(threshold * 255.0))
        components, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
        voxel_mm3 = dz * row_mm * col_mm
        sizes = np.zeros(count + 1, np.int64)
        for start in range(0, slices, RESAMPLE_CHUNK):  # bincount widens to int64: a chunk at a time
            sizes += np.bincount(components[start : start + RESAMPLE_CHUNK].ravel(), minlength=count + 1)
        least = float(post.get("min_volume_mm3", 0.0))
        kept = [k for k in range(1, count + 1) if sizes[k] * voxel_mm3 >= least]
        kept.sort(key=lambda k: -int(sizes[k]))
        boxes = ndimage.find_objects(components)
        label_map = np.zeros(plan.source_shape, np.uint8)
        findings: list[dict[str, Any]] = []
        for k in kept:
            box = boxes[k - 1]
            inside = components[box] == k
            label_map[box][inside] = 1
            if len(findings) < MAX_FINDINGS:
                findings.append(_finding(inside, box, stored[box], voxel_mm3, row_mm, col_mm))
        warnings = list(plan.warnings)
        if len(kept) > MAX_FINDINGS:
            warnings.append(f"{len(kept) - MAX_FINDINGS} more findings are in the mask but not listed")
        found = self._label
        present = max((f["max_probability"] for f in findings), default=min(below, threshold))
        details = {
            "findings": findings,
            "voxel_spacing_mm": [round(v, 6) for v in plan.spacing_mm],
            "shape": list(plan.source_shape),
        }
        return Prediction(
            found if findings else "none",
            {found: round(present, 6), "none": round(1.0 - present, 6)},
            details=details,
            warnings=warnings,
            mask=label_map,
        )


def _finding(
    inside: np.ndarray, box: tuple[slice, ...], stored: np.ndarray, voxel_mm3: float, row_mm: float, col_mm: float
) -> dict[str, Any]:
    """One component: `inside` is its mask within its bounding box, `stored` the box's probabilities
    (p * 255). Sums over axes, no voxel list: a component may fill the whole series."""
    voxels = int(inside.sum())
    centroid = []
    for axis, start in enumerate(s.start for s in box):
        counts = inside.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.int64)
        centroid.append(round(float(counts @ np.arange(len(counts))) / voxels + start, 2))
    total = float(stored.sum(where=inside, dtype=np.uint64))
    return {
        "volume_ml": round(voxels * voxel_mm3 / 1000.0, 4),
        "longest_axial_diameter_mm": longest_axial_diameter_mm(inside, row_mm, col_mm),
        "slice_range": [int(box[0].start), int(box[0].stop - 1)],
        "centroid_voxel": centroid,
        "mean_probability": round(total / voxels / 255.0, 4),
        "max_probability": round(float(stored.max(where=inside, initial=0)) / 255.0, 4),
    }
