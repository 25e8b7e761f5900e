"""A CT series as one volume: slices in order along the slice normal, in Hounsfield units.

`build_volume(instances)` takes the instances of one series (Part-10 bytes or pydicom Datasets,
in any order; single-frame images, enhanced multi-frame images, or both) and gives a `Volume`,
or raises SeriesProblem naming why the instances are not one volume:

- more than one study or series, the same instance twice;
- slices in more than one orientation, of more than one size or pixel spacing;
- two slices at one position, or a gap: a step between neighbours over 1.5 times the median step
  ("gap at z = 42.5 mm", z being the position along the slice normal, where a slice is missing).

One slice is not a problem here; the model decides what it can use. Positions are read along the
normal of the series' orientation (ImagePositionPatient . (row x column direction)); only when no
slice has a position are slices ordered by InstanceNumber (then frame), and positions are NaN.

Corrupt instances. An instance that cannot be read (not DICOM, truncated, pixels that do not
decode, a header value that does not parse, a transfer syntax we cannot decode) makes
`build_volume` raise `CorruptInstance` (a SeriesProblem) carrying its `index` in the list given.
`readable(instances)` sorts them all at once: the Datasets that can be used, and a CorruptInstance
for each one that cannot. A pipeline that may go on without a corrupt instance calls
`build_volume` on the good ones: if leaving it out opens a gap, that raises "gap at z = ...", so a
volume comes back only when no gap results. The pixels `readable` decoded stay cached on its
Datasets (pydicom's `pixel_array`), so the second call does not decode them again.

Memory. The decode is refused from the headers alone when the series would need more than
`budget_bytes(memory_mb)` (half the function's memory) at VOLUME_BYTES_PER_SAMPLE a pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from medfn.codecs.budget import budget_bytes
from medfn.errors import CorruptInstance, MedfnError, SeriesProblem, UnprocessableInput
from medfn.studies.geometry import order_planes
from medfn.studies.provenance import fill_filing_attributes

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from medfn.studies.headers import InstanceHeader
    from medfn.studies.planes import Plane

# The errors are medfn.errors' own, named here too because this is where they are raised.
__all__ = ["CorruptInstance", "SeriesProblem", "SourceFrame", "Volume", "build_volume", "readable"]

# What one pixel of a series costs at the peak of a build: its stored bytes (2), pydicom's
# decoded array kept on the Dataset (2), the float32 HU volume (4), and a float32 copy for the
# model's own preprocessing (4).
VOLUME_BYTES_PER_SAMPLE = 12
DEFAULT_MEMORY_MB = 1024  # function.toml's default memory_mb


@dataclass(frozen=True)
class SourceFrame:
    """Where one slice of a volume came from: an instance, and its frame (1-based) if multi-frame."""

    sop_class_uid: str
    sop_instance_uid: str
    frame: int | None = None


@dataclass(frozen=True)
class Volume:
    """Slices sorted along the normal of their one orientation, at one pixel spacing and size.

    `hu[k]` is the slice at `positions[k]`; `frames[k]` names the instance (and frame) it came from,
    so a segmentation can reference its sources. `datasets` are the source instances (pydicom
    Datasets, pixel data included) in the order of their first slice: the DICOM results copy the
    patient and study modules from them.
    """

    hu: np.ndarray  # (slices, rows, columns) float32, rescale applied
    spacing_mm: tuple[float, float, float]  # (between slice centres, between rows, between columns)
    orientation: tuple[float, float, float, float, float, float]  # ImageOrientationPatient
    positions: np.ndarray  # (slices, 3) ImagePositionPatient of each slice, mm
    frames: tuple[SourceFrame, ...]
    datasets: tuple[Any, ...]
    study_instance_uid: str
    series_instance_uid: str

    @property
    def shape(self) -> tuple[int, int, int]:
        slices, rows, columns = self.hu.shape
        return slices, rows, columns

    @property
    def voxel_ml(self) -> float:
        """The volume of one voxel in millilitres (NaN when the slice spacing is unknown)."""
        return float(np.prod(self.spacing_mm)) / 1000.0


def build_volume(instances: Sequence[bytes | Dataset], *, memory_mb: int = DEFAULT_MEMORY_MB) -> Volume:
    """The instances of one series as one volume. Raises SeriesProblem (CorruptInstance for one
    instance that cannot be read), UnprocessableInput (over the memory budget)."""
    # Imported here: the model code that only takes a `Volume` must not load pydicom with it.
    from medfn.studies.instances import open_instance

    opened = [open_instance(item, index) for index, item in enumerate(instances)]
    if not opened:
        raise UnprocessableInput("a series with no instances is not a volume")
    study, series = _one_series([instance.header for instance in opened])
    planes = [plane for instance in opened for plane in instance.planes]
    layout = order_planes(planes)
    _check_budget(planes, budget_bytes(memory_mb))

    hu = np.empty((len(planes), planes[0].rows, planes[0].columns), np.float32)
    for k, plane in enumerate(layout.planes):
        hu[k] = _hu(opened[plane.index].dataset, plane)
    first_use: dict[int, None] = {}
    for plane in layout.planes:
        first_use.setdefault(plane.index, None)
    return Volume(
        hu=hu,
        spacing_mm=layout.spacing_mm,
        orientation=layout.orientation,
        positions=layout.positions,
        frames=tuple(
            SourceFrame(opened[p.index].header.sop_class_uid, opened[p.index].header.sop_instance_uid, p.frame)
            for p in layout.planes
        ),
        datasets=tuple(fill_filing_attributes(opened[index].dataset) for index in first_use),
        study_instance_uid=study,
        series_instance_uid=series,
    )


def readable(
    instances: Sequence[bytes | Dataset], *, memory_mb: int = DEFAULT_MEMORY_MB
) -> tuple[list[Dataset], list[CorruptInstance]]:
    """The instances that can be read (as Datasets, pixels decoded, in the order given), and a
    CorruptInstance for each that cannot (its `index`, and a `reason` fit for a client).

    Series-level problems are not looked for here (build_volume finds them); a series over the
    memory budget raises UnprocessableInput before any pixel is decoded.
    """
    from medfn.studies.instances import open_instance

    good, bad = [], []
    for index, item in enumerate(instances):
        try:
            good.append(open_instance(item, index))
        except CorruptInstance as exc:
            bad.append(exc)
    _check_budget([plane for instance in good for plane in instance.planes], budget_bytes(memory_mb))
    decoded = []
    for instance in good:
        try:
            _stored_frames(instance.dataset, instance.planes[0])
        except CorruptInstance as exc:
            bad.append(exc)
            continue
        decoded.append(instance.dataset)
    return decoded, sorted(bad, key=lambda exc: exc.index)


def _one_series(headers: Sequence[InstanceHeader]) -> tuple[str, str]:
    if len({header.study_instance_uid for header in headers}) > 1:
        raise SeriesProblem("instances of more than one study (Study Instance UID differs)")
    if len({header.series_instance_uid for header in headers}) > 1:
        raise SeriesProblem("instances of more than one series (Series Instance UID differs)")
    seen: dict[str, int] = {}
    for index, header in enumerate(headers):
        if header.sop_instance_uid in seen:
            raise SeriesProblem(f"instances {seen[header.sop_instance_uid]} and {index} are the same SOP instance")
        seen[header.sop_instance_uid] = index
    return headers[0].study_instance_uid, headers[0].series_instance_uid


def _check_budget(planes: Sequence[Plane], max_bytes: int) -> None:
    samples = sum(plane.rows * plane.columns for plane in planes)
    needed = samples * VOLUME_BYTES_PER_SAMPLE
    if needed > max_bytes:
        raise UnprocessableInput(
            f"the series' {len(planes)} slices ({samples} pixels) need about {needed // 2**20} MiB to decode,"
            f" over this function's budget of {max_bytes // 2**20} MiB"
        )


def _hu(ds: Dataset, plane: Plane) -> np.ndarray:
    stored = _stored_frames(ds, plane)[(plane.frame or 1) - 1]
    hu: np.ndarray = stored.astype(np.float32) * np.float32(plane.slope) + np.float32(plane.intercept)
    return hu


def _stored_frames(ds: Dataset, plane: Plane) -> np.ndarray:
    """Every frame of an instance as stored, (frames, rows, columns); decoded once, then cached."""
    from medfn.studies.instances import check_decodable

    check_decodable(ds, plane.index)
    try:
        stored: np.ndarray = np.asarray(ds.pixel_array)  # pydicom caches it on the Dataset
        return stored.reshape(-1, plane.rows, plane.columns)
    except MedfnError:
        raise
    except Exception as exc:  # decoders raise many types; none of their text goes out
        raise CorruptInstance(plane.index, "its pixel data could not be decoded (truncated or corrupt)") from exc
