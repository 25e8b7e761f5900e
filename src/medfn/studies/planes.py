"""Each image plane of an instance, read from its header: where it lies and how its values become HU.

A classic single-frame image (CT Image Storage) has one plane, described by top-level
attributes. An enhanced multi-frame image (Enhanced CT) has one per frame, described by its
functional groups: a frame's own item of PerFrameFunctionalGroupsSequence wins over the shared
one. Both come out as the same `Plane`, so the volume is built the same way from either.

A header value that cannot be used raises CorruptInstance with a reason naming the attribute,
never its value. Nothing here imports pydicom (the datasets come in already read), so the
volume's geometry and its `Volume` type load without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medfn.errors import CorruptInstance, MedfnError, UnprocessableInput

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# Direction cosines that are off unit length or orthogonality by more than this are not a plane.
_COSINE_TOLERANCE = 1e-2


@dataclass(frozen=True)
class Plane:
    """One slice as its header describes it; `index` is its instance's place in the list given."""

    index: int
    frame: int | None  # 1-based frame number for a functional-group (enhanced) instance
    rows: int
    columns: int
    position: tuple[float, float, float] | None  # ImagePositionPatient
    orientation: tuple[float, float, float, float, float, float] | None  # ImageOrientationPatient
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns)
    thickness: float | None  # SpacingBetweenSlices, else SliceThickness: the single-slice fallback
    slope: float
    intercept: float
    instance_number: int | None


def planes_of(ds: Dataset, index: int) -> list[Plane]:
    """The planes of one instance, in frame order. Raises CorruptInstance."""
    try:
        return _planes(ds, index)
    except CorruptInstance:
        raise
    except MedfnError as exc:  # our own message, e.g. a Number of Frames that is not a number
        raise CorruptInstance(index, exc.message) from None


def is_enhanced(ds: Any) -> bool:
    """Whether the instance describes its frames with functional groups (Enhanced CT and the like)."""
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def _planes(ds: Dataset, index: int) -> list[Plane]:
    if "PixelData" not in ds:
        raise CorruptInstance(index, "it has no pixel data")
    if optional_int(ds, "SamplesPerPixel") not in (None, 1):
        raise CorruptInstance(index, "it is not a grayscale image (Samples per Pixel is not 1)")
    rows, columns = optional_int(ds, "Rows") or 0, optional_int(ds, "Columns") or 0
    if rows < 1 or columns < 1:
        raise CorruptInstance(index, "it has no image dimensions (Rows, Columns)")
    frames = number_of_frames(ds)
    instance_number = optional_int(ds, "InstanceNumber")
    if not is_enhanced(ds):
        if frames != 1:
            raise CorruptInstance(index, "it is a multi-frame image without functional groups")
        return [_plane(ds, ds, ds, ds, index=index, frame=None, size=(rows, columns), number=instance_number)]

    shared = _first(ds, "SharedFunctionalGroupsSequence") or {}
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != frames:
        raise CorruptInstance(index, "its Per-frame Functional Groups do not match its Number of Frames")
    planes = []
    for frame, own in enumerate(per_frame, start=1):

        def group(keyword: str, own: Any = own) -> Any:
            return _first(own, keyword) or _first(shared, keyword)

        planes.append(
            _plane(
                group("PlanePositionSequence"),
                group("PlaneOrientationSequence"),
                group("PixelMeasuresSequence"),
                group("PixelValueTransformationSequence") or ds,  # some writers keep rescale at the top
                index=index,
                frame=frame,
                size=(rows, columns),
                number=instance_number,
            )
        )
    return planes


def _plane(
    position: Any, orientation: Any, measures: Any, rescale: Any, *, index: int, frame: int | None,
    size: tuple[int, int], number: int | None,
) -> Plane:  # fmt: skip
    where = f"frame {frame}'s " if frame is not None else ""
    iop = _numbers(orientation, "ImageOrientationPatient", 6, index, f"{where}Image Orientation (Patient)")
    if iop is not None:
        _check_cosines(iop, index, where)
    ipp = _numbers(position, "ImagePositionPatient", 3, index, f"{where}Image Position (Patient)")
    spacing = _numbers(measures, "PixelSpacing", 2, index, f"{where}Pixel Spacing")
    if spacing is not None and min(spacing) <= 0:
        raise CorruptInstance(index, f"its {where}Pixel Spacing is not positive")
    thickness = None
    for keyword, what in (("SpacingBetweenSlices", "Spacing Between Slices"), ("SliceThickness", "Slice Thickness")):
        value = _numbers(measures, keyword, 1, index, f"{where}{what}")
        if value is not None and value[0] > 0:
            thickness = value[0]
            break
    slope = _numbers(rescale, "RescaleSlope", 1, index, f"{where}Rescale Slope")
    intercept = _numbers(rescale, "RescaleIntercept", 1, index, f"{where}Rescale Intercept")
    return Plane(
        index=index,
        frame=frame,
        rows=size[0],
        columns=size[1],
        position=(ipp[0], ipp[1], ipp[2]) if ipp is not None else None,
        orientation=(iop[0], iop[1], iop[2], iop[3], iop[4], iop[5]) if iop is not None else None,
        pixel_spacing=(spacing[0], spacing[1]) if spacing is not None else None,
        thickness=thickness,
        slope=slope[0] if slope is not None else 1.0,
        intercept=intercept[0] if intercept is not None else 0.0,
        instance_number=number,
    )


def optional_int(ds: Any, keyword: str) -> int | None:
    """An integer attribute, or None when absent, empty or not an integer."""
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def number_of_frames(ds: Any) -> int:
    """NumberOfFrames, 1 when absent; a value that is not a positive integer is a 422."""
    if ds.get("NumberOfFrames") in (None, ""):
        return 1
    frames = optional_int(ds, "NumberOfFrames")
    if frames is None or frames < 1:
        raise UnprocessableInput("DICOM file's Number of Frames is not a positive integer")
    return frames


def _numbers(item: Any, keyword: str, count: int, index: int, what: str) -> list[float] | None:
    """`count` finite numbers from an attribute, None when it is absent or empty."""
    if item is None:
        return None
    try:
        value = item.get(keyword)
    except Exception:
        value = "?"  # present but undecodable: refused below like any other bad value
    if value is None or value == "":
        return None
    values = list(value) if count > 1 and not isinstance(value, (str, bytes)) else [value]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError, OverflowError):
        numbers = []
    if len(numbers) != count or not all(math.isfinite(n) for n in numbers):
        raise CorruptInstance(index, f"its {what} is not {count} number{'s' if count > 1 else ''}")
    return numbers


def _check_cosines(iop: list[float], index: int, where: str) -> None:
    row, column = iop[:3], iop[3:]
    dot = sum(r * c for r, c in zip(row, column, strict=True))
    lengths = [math.sqrt(sum(v * v for v in vector)) for vector in (row, column)]
    if abs(dot) > _COSINE_TOLERANCE or any(abs(length - 1.0) > _COSINE_TOLERANCE for length in lengths):
        raise CorruptInstance(index, f"its {where}Image Orientation (Patient) is not two orthogonal unit vectors")


def _first(item: Any, keyword: str) -> Any:
    """The first item of a sequence attribute, or None."""
    try:
        sequence = item.get(keyword)
        return sequence[0] if sequence else None
    except Exception:
        return None
