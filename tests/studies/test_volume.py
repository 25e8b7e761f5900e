"""build_volume: a series in any order and either encoding -> one volume in HU, or the reason why not."""

from __future__ import annotations

import io
import math
import random
import subprocess
import sys

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.pixels import apply_modality_lut

from medfn.errors import CorruptInstance, SeriesProblem, UnprocessableInput
from medfn.studies import build_volume, readable
from model_store.build.dicom_series import AXIAL
from tests.studies.helpers import PATIENT_NAME, edited, enhanced, phantom_hu, series

REVERSED = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # normal (0, 0, -1): slice order runs against patient z
OBLIQUE = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # sagittal: normal (-1, 0, 0)


def shuffled(items: list[bytes], seed: int = 7) -> list[bytes]:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def test_a_shuffled_series_gives_the_sorted_volume_in_hu() -> None:
    hu = phantom_hu()
    files = series(hu, origin=(-10.0, 5.0, 42.5))
    volume = build_volume(shuffled(files))
    assert np.array_equal(volume.hu, hu) and volume.hu.dtype == np.float32
    assert volume.spacing_mm == (2.5, 0.7, 0.7) and volume.orientation == AXIAL
    assert np.allclose(volume.positions[:, 2], 42.5 + 2.5 * np.arange(6))
    in_order = [pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID for data in files]
    assert [frame.sop_instance_uid for frame in volume.frames] == in_order
    assert [ds.SOPInstanceUID for ds in volume.datasets] == in_order
    assert all(frame.frame is None for frame in volume.frames)
    assert np.array_equal(build_volume(files).hu, volume.hu)


@pytest.mark.parametrize("orientation", [AXIAL, REVERSED, OBLIQUE], ids=["axial", "reversed", "sagittal"])
def test_slices_are_sorted_along_the_normal_whatever_the_orientation(orientation: tuple[float, ...]) -> None:
    hu = phantom_hu()
    volume = build_volume(shuffled(series(hu, orientation=orientation)))
    assert np.array_equal(volume.hu, hu)  # the builder steps along the normal: slice k is k steps along it
    assert volume.orientation == orientation


@pytest.mark.parametrize("orientation", [AXIAL, REVERSED], ids=["axial", "reversed"])
def test_enhanced_multiframe_gives_the_same_volume_as_single_frames(orientation: tuple[float, ...]) -> None:
    hu = phantom_hu()
    classic = build_volume(series(hu, orientation=orientation))
    multiframe = build_volume([enhanced(hu, orientation=orientation)])
    assert np.array_equal(multiframe.hu, classic.hu)
    assert multiframe.spacing_mm == classic.spacing_mm and multiframe.orientation == classic.orientation
    assert np.allclose(multiframe.positions, classic.positions)
    assert [frame.frame for frame in multiframe.frames] == [1, 2, 3, 4, 5, 6]
    assert len(multiframe.datasets) == 1


def test_rescale_slope_and_intercept_give_hu() -> None:
    hu = phantom_hu()
    for files in (series(hu, rescale=(0.5, -2048.0)), [enhanced(hu, rescale=(0.5, -2048.0))]):
        assert np.array_equal(build_volume(files).hu, hu)  # whole HU at slope 0.5: exact


def test_pydicoms_ct_small_is_a_one_slice_volume() -> None:
    path = pydicom.data.get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    volume = build_volume([ds])
    assert volume.shape == (1, 128, 128)
    assert volume.spacing_mm == (5.0, 0.661468, 0.661468)  # one slice: its stated spacing
    assert np.array_equal(volume.hu[0], apply_modality_lut(ds.pixel_array, ds).astype(np.float32))


def test_without_positions_slices_follow_their_instance_numbers() -> None:
    hu = phantom_hu()
    located = series(hu)
    files = [edited(data, ImagePositionPatient=None, SliceLocation=None) for data in located]
    volume = build_volume(shuffled(files))
    assert np.array_equal(volume.hu, hu)
    assert np.isnan(volume.positions).all() and volume.spacing_mm[0] == 2.5  # Slice Thickness stands in
    with pytest.raises(SeriesProblem, match="some slices have a position"):
        build_volume(files[:3] + located[3:])
    numbered = [edited(data, InstanceNumber=None) for data in files]
    with pytest.raises(SeriesProblem, match="neither positions nor instance numbers"):
        build_volume(numbered)


def _problem(instances: list[bytes]) -> str:
    with pytest.raises(SeriesProblem) as caught:
        build_volume(instances)
    assert PATIENT_NAME.split("^")[0] not in caught.value.message
    return caught.value.message


def test_two_orientations() -> None:
    hu = phantom_hu()
    uids = {"study_uid": "1.2.3.4", "series_uid": "1.2.3.4.5"}
    localizer = series(hu[:1], orientation=OBLIQUE, **uids)
    assert "two orientations" in _problem(series(hu, **uids) + localizer)


def test_a_gap_is_named_by_where_the_slice_is_missing() -> None:
    files = series(phantom_hu(), origin=(0.0, 0.0, 37.5))
    assert _problem(files[:2] + files[3:]).startswith("gap at z = 42.5 mm")


def test_pixel_spacing_size_and_position_mismatches() -> None:
    hu = phantom_hu()
    uids = {"study_uid": "1.2.3.4", "series_uid": "1.2.3.4.5"}
    finer = series(hu, spacing_mm=(2.5, 0.5, 0.5), origin=(0.0, 0.0, 15.0), **uids)
    assert _problem(series(hu, **uids) + finer) == "pixel spacing differs between slices"
    larger = series(phantom_hu(size=40), origin=(0.0, 0.0, 15.0), **uids)
    assert "differ in size" in _problem(series(hu, **uids) + larger)
    assert _problem(series(hu, **uids) + series(hu[:1], **uids)).startswith("two slices at z = 0.0 mm")


def test_mixed_series_studies_and_repeated_instances() -> None:
    hu = phantom_hu()
    files = series(hu, study_uid="1.2.3.4")
    other_series = series(hu, study_uid="1.2.3.4", origin=(0.0, 0.0, 15.0))
    assert "more than one series" in _problem(files + other_series[:1])
    stray = series(hu[:1], study_uid="1.2.3.9", series_uid=str(pydicom.dcmread(io.BytesIO(files[0])).SeriesInstanceUID))
    assert "more than one study" in _problem(files + stray)
    assert _problem(files + files[2:3]) == "instances 2 and 6 are the same SOP instance"


def test_a_corrupt_instance_is_named_by_its_place_and_sorted_out_by_readable() -> None:
    files = series(phantom_hu())
    broken = list(files)
    broken[2] = files[2][: len(files[2]) - 500]  # pixel data cut short
    broken[5] = b"\x00" * 300
    with pytest.raises(CorruptInstance) as caught:
        build_volume(broken)
    assert caught.value.index == 5  # headers first: the file that is not DICOM is found before any decode
    good, bad = readable(broken)
    assert [(exc.index, exc.reason) for exc in bad] == [
        (2, "its pixel data could not be decoded (truncated or corrupt)"),
        (5, "not a DICOM file (no DICM preamble)"),
    ]
    assert len(good) == 4
    # Without slice 2 there is a gap, so no volume; without only the last slice there is one
    assert _problem(good).startswith("gap at z = 5.0 mm")
    assert build_volume(readable(files[:5] + [broken[5]])[0]).shape == (5, 32, 32)


def test_a_header_value_that_does_not_parse_makes_the_instance_corrupt() -> None:
    files = series(phantom_hu())
    files[1] = edited(files[1], ImageOrientationPatient=[1, 0, 0, 1, 0, 0])
    with pytest.raises(CorruptInstance, match="not two orthogonal unit vectors") as caught:
        build_volume(files)
    assert caught.value.index == 1


def test_the_decode_is_refused_over_the_memory_budget_from_the_headers() -> None:
    files = series(phantom_hu(slices=4, size=256))
    with pytest.raises(UnprocessableInput, match="over this function's budget of 0 MiB"):
        build_volume(files, memory_mb=1)
    assert build_volume(files, memory_mb=64).shape == (4, 256, 256)


def test_voxel_volume() -> None:
    volume = build_volume(series(phantom_hu()))
    assert math.isclose(volume.voxel_ml, 2.5 * 0.7 * 0.7 / 1000.0)


def test_importing_the_package_and_the_volume_type_loads_no_dicom_library() -> None:
    code = (
        "import sys, medfn.studies, medfn.studies.volume\n"
        "from medfn.studies import Volume\n"
        "assert not {'pydicom', 'highdicom'} & set(sys.modules), sorted({'pydicom', 'highdicom'} & set(sys.modules))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
