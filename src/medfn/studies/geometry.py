"""Whether a series' planes stack into one volume, and in which order: from their headers alone.

Checked in the order a reader would ask: one orientation, one size, one pixel spacing; then the
positions along the slice normal, sorted: no two at one place, no step over GAP_FACTOR times the
median step. Every problem is a SeriesProblem whose message names it in our own words; the
numbers it quotes are positions in millimetres, never header text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medfn.errors import SeriesProblem
from medfn.studies.planes import Plane

GAP_FACTOR = 1.5  # a step this many times the median step means a slice is missing
DUPLICATE_MM = 0.01  # slices closer than this along the normal are at one position
_ORIENTATION_TOLERANCE = 1e-3  # direction cosines that differ by less are one orientation
_SPACING_RTOL = 1e-4


@dataclass(frozen=True)
class Layout:
    """The planes in volume order, where each lies, and the grid they make."""

    planes: list[Plane]
    positions: np.ndarray  # (slices, 3) mm; NaN when ordered by instance number
    spacing_mm: tuple[float, float, float]  # slice step (NaN if unknown), row step, column step
    orientation: tuple[float, float, float, float, float, float]  # NaN when no slice states one


def order_planes(planes: Sequence[Plane]) -> Layout:
    """Sort the planes along their normal (InstanceNumber when none has a position), or raise."""
    orientation = _one_orientation(planes)
    if len({(plane.rows, plane.columns) for plane in planes}) > 1:
        raise SeriesProblem("slices differ in size (rows x columns)")
    row_step, column_step = _one_pixel_spacing(planes)
    located = [plane.position is not None and plane.orientation is not None for plane in planes]
    if all(located):
        ordered, positions, step = _by_position(planes, orientation)
    elif not any(located):
        ordered, positions, step = _by_instance_number(planes)
    else:
        raise SeriesProblem("some slices have a position (Image Position and Orientation) and some do not")
    return Layout(ordered, positions, (step, row_step, column_step), orientation)


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """The normal of an ImageOrientationPatient: row direction x column direction."""
    return np.cross(np.asarray(orientation[:3], np.float64), np.asarray(orientation[3:], np.float64))


def _one_orientation(planes: Sequence[Plane]) -> tuple[float, float, float, float, float, float]:
    stated = [plane.orientation for plane in planes if plane.orientation is not None]
    if not stated:
        return (math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    if len(stated) < len(planes):
        raise SeriesProblem("some slices state an orientation (Image Orientation (Patient)) and some do not")
    distinct: list[np.ndarray] = []
    for orientation in stated:
        cosines = np.asarray(orientation)
        if not any(np.abs(cosines - seen).max() < _ORIENTATION_TOLERANCE for seen in distinct):
            distinct.append(cosines)
    if len(distinct) > 1:
        raise SeriesProblem(f"slices in {_count(len(distinct))} orientations (a localizer or a reformat mixed in?)")
    return stated[0]


def _one_pixel_spacing(planes: Sequence[Plane]) -> tuple[float, float]:
    stated = [plane.pixel_spacing for plane in planes if plane.pixel_spacing is not None]
    if not stated:
        raise SeriesProblem("slices state no pixel spacing (Pixel Spacing): a volume needs it")
    if len(stated) < len(planes) or not np.allclose(stated, stated[0], rtol=_SPACING_RTOL, atol=0.0):
        raise SeriesProblem("pixel spacing differs between slices")
    return stated[0]


def _by_position(planes: Sequence[Plane], orientation: Sequence[float]) -> tuple[list[Plane], np.ndarray, float]:
    normal = slice_normal(orientation)
    z = np.array([np.dot(plane.position, normal) for plane in planes], np.float64)  # type: ignore[arg-type]
    order = np.argsort(z, kind="stable")
    z = z[order]
    ordered = [planes[int(k)] for k in order]
    positions = np.array([plane.position for plane in ordered], np.float64).reshape(-1, 3)
    if len(ordered) == 1:
        return ordered, positions, _stated_step(ordered[0])
    steps = np.diff(z)
    close = np.flatnonzero(steps < DUPLICATE_MM)
    if close.size:
        raise SeriesProblem(f"two slices at z = {z[close[0]]:.1f} mm (z: position along the slice normal)")
    median = float(np.median(steps))
    gaps = np.flatnonzero(steps > GAP_FACTOR * median)
    if gaps.size:
        k = int(gaps[0])
        raise SeriesProblem(
            f"gap at z = {z[k] + median:.1f} mm: slices are {median:.3g} mm apart, but none lies between"
            f" z = {z[k]:.1f} and {z[k + 1]:.1f} mm (z: position along the slice normal)"
        )
    return ordered, positions, median


def _by_instance_number(planes: Sequence[Plane]) -> tuple[list[Plane], np.ndarray, float]:
    if any(plane.instance_number is None for plane in planes):
        raise SeriesProblem("slices have neither positions nor instance numbers to order them by")
    keys = [(plane.instance_number or 0, plane.frame or 0) for plane in planes]
    if len(set(keys)) < len(keys):
        raise SeriesProblem("two slices share an instance number, and no slice has a position to order them by")
    ordered = [plane for _, plane in sorted(zip(keys, planes, strict=True), key=lambda pair: pair[0])]
    positions = np.full((len(ordered), 3), math.nan)
    return ordered, positions, _stated_step(ordered[0])


def _stated_step(plane: Plane) -> float:
    """The slice step a header states (Spacing Between Slices, else Slice Thickness), NaN if none."""
    return plane.thickness if plane.thickness is not None else math.nan


def _count(n: int) -> str:
    return {2: "two", 3: "three", 4: "four"}.get(n, str(n))
