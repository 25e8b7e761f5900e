"""The CT phantom series the nodule model trains on: reproducible, in millimetres whatever the grid,
nodules wholly inside a lung with a truth that agrees with their label map."""

from __future__ import annotations

import numpy as np
import pytest

from model_store.build import ct_series_phantoms as phantoms

SMALL = dict(rows=160, cols=160, pixel_spacing=(2.2, 2.2), slices=24, slice_spacing=2.5)


def test_the_same_seed_and_index_give_the_same_series_and_another_index_another() -> None:
    first, again, other = (phantoms.generate(11, i, **SMALL) for i in (0, 0, 1))
    assert np.array_equal(first.hu, again.hu) and np.array_equal(first.labels, again.labels)
    assert first.nodules == again.nodules
    assert not np.array_equal(first.hu, other.hu)


def test_arrays_and_spacing_are_as_asked() -> None:
    series = phantoms.generate(11, 2, rows=96, cols=128, pixel_spacing=(2.5, 2.0), slices=7, slice_spacing=3.0)
    assert series.hu.shape == series.labels.shape == (7, 96, 128)
    assert series.hu.dtype == np.float32 and series.labels.dtype == np.uint8
    assert series.spacing_mm == (3.0, 2.5, 2.0)
    assert phantoms.HU_RANGE[0] <= series.hu.min() and series.hu.max() <= phantoms.HU_RANGE[1]
    assert series.hu.min() < -900 and series.hu.max() > 300  # air and bone


def test_a_whole_series_covers_both_lungs_with_a_margin() -> None:
    series = phantoms.generate(11, 3, rows=64, cols=64, pixel_spacing=(5.5, 5.5), slice_spacing=5.0)
    extent = (len(series.hu) - 1) * 5.0
    assert 240 <= extent <= 305
    inner = series.hu[:, 24:40, 14:50]  # within any body (the central 88 x 198 mm), off its edge
    per_slice = (inner < -600).sum(axis=(1, 2))
    assert per_slice[0] == 0 and per_slice[-1] == 0 and per_slice.max() > 100  # below the bases, above the apices


def test_the_grid_samples_the_same_anatomy() -> None:
    """Another matrix, pixel or slice spacing: the same nodules, in the same place, of the same size."""
    coarse = phantoms.generate(21, 0, rows=192, cols=192, pixel_spacing=(1.9, 1.9), slices=41, slice_spacing=2.5)
    fine = phantoms.generate(21, 0, rows=400, cols=400, pixel_spacing=(0.9, 0.9), slices=101, slice_spacing=1.0)
    assert len(coarse.nodules) == len(fine.nodules) >= 1
    for a, b in zip(coarse.nodules, fine.nodules, strict=True):
        assert a.volume_ml_analytic == b.volume_ml_analytic and a.diameter_mm == b.diameter_mm
        assert a.center_mm[1:] == b.center_mm[1:]
        assert b.volume_ml == pytest.approx(b.volume_ml_analytic, rel=0.05)


def test_label_map_volumes_agree_with_the_analytic_ones() -> None:
    """Each nodule's voxels x voxel volume against its shape's own volume: within a few per cent
    for nodules of 10 mm and more on slices of 2.5 mm or less."""
    checked = 0
    for index in range(12):
        series = phantoms.generate(
            31, index, rows=256, cols=256, pixel_spacing=(1.4, 1.4), slices=48, slice_spacing=1.5
        )
        for nodule in series.nodules:
            assert phantoms.NODULE_DIAMETER_MM[0] <= nodule.diameter_mm <= phantoms.NODULE_DIAMETER_MM[1]
            assert phantoms.NODULE_HU[0] <= nodule.hu <= phantoms.NODULE_HU[1]
            assert nodule.volume_ml == pytest.approx(
                float((series.labels == nodule.label).sum()) * 1.5 * 1.4 * 1.4 / 1000
            )
            if nodule.diameter_mm >= 10:
                assert nodule.volume_ml == pytest.approx(nodule.volume_ml_analytic, rel=0.08), nodule
                checked += 1
    assert checked >= 5


def test_nodules_lie_wholly_inside_a_lung_and_apart() -> None:
    for index in range(8):
        series = phantoms.generate(
            41, index, rows=224, cols=224, pixel_spacing=(1.6, 1.6), slices=40, slice_spacing=2.0
        )
        for nodule in series.nodules:
            mask = series.labels == nodule.label
            first, last = nodule.slice_range
            assert 0 < first <= last < len(series.hu) - 1  # inside the series, not cut by its ends
            core = mask.copy()  # a pixel in from the outline, in-plane: off the partial-volume edge
            core[:, 1:] &= mask[:, :-1]
            core[:, :-1] &= mask[:, 1:]
            core[:, :, 1:] &= mask[:, :, :-1]
            core[:, :, :-1] &= mask[:, :, 1:]
            if nodule.diameter_mm >= 10 and core.sum() >= 20:
                assert abs(float(np.median(series.hu[core])) - nodule.hu) < 60  # the nodule's own density
            # The shell two pixels around the nodule, on its slices: lung, not the chest wall or heart
            shell = np.zeros_like(mask)
            for k in range(first, last + 1):
                grown = mask[k].copy()
                for _ in range(3):
                    grown[1:] |= grown[:-1].copy()
                    grown[:-1] |= grown[1:].copy()
                    grown[:, 1:] |= grown[:, :-1].copy()
                    grown[:, :-1] |= grown[:, 1:].copy()
                shell[k] = grown & ~mask[k]
            assert float(np.median(series.hu[shell & (series.labels == 0)])) < -500


def test_counts_cover_none_to_three_and_vessels_are_thinner_than_any_nodule() -> None:
    counts = {len(phantoms.generate(51, i, **SMALL).nodules) for i in range(25)}
    assert {0, 1, 2} <= counts and counts <= {0, 1, 2, 3}
    assert 2 * phantoms.VESSEL_RADIUS_MM[1] < phantoms.NODULE_DIAMETER_MM[0]
    assert len(phantoms.generate(51, 0, **SMALL, nodules=0).nodules) == 0


def test_thick_slices_blur_a_nodule_along_z_more_than_thin_ones() -> None:
    """Partial volume: the slice through a nodule's top edge is lighter on 5 mm slices."""
    thin = phantoms.generate(61, 1, rows=256, cols=256, pixel_spacing=(1.4, 1.4), slice_spacing=1.0, nodules=1)
    thick = phantoms.generate(61, 1, rows=256, cols=256, pixel_spacing=(1.4, 1.4), slice_spacing=5.0, nodules=1)
    assert thin.nodules and thick.nodules
    assert thick.nodules[0].slice_range[1] - thick.nodules[0].slice_range[0] < (
        thin.nodules[0].slice_range[1] - thin.nodules[0].slice_range[0]
    )


def test_the_longest_axial_diameter_of_a_disc_is_its_diameter() -> None:
    """Centre to centre plus one pixel: a 20 mm disc at 0.5 mm comes to 20 mm, within a pixel."""
    centres = (np.arange(100) + 0.5) * 0.5 - 25.0
    y, x = np.meshgrid(centres, centres, indexing="ij")
    disc = (np.hypot(y, x) < 10.0)[None]
    assert phantoms.longest_axial_diameter_mm(disc, 0.5, 0.5) == pytest.approx(20.0, abs=0.5)
    bar = np.zeros((2, 10, 10), bool)
    bar[1, 4, 2:7] = True  # five pixels in a row, 1 mm tall and 2 mm wide each: 8 mm between the end centres
    assert phantoms.longest_axial_diameter_mm(bar, 1.0, 2.0) == pytest.approx(8.0 + 1.5)


def test_a_series_becomes_the_pipelines_volume() -> None:
    series = phantoms.generate(11, 0, **SMALL)
    volume = phantoms.volume(series)
    assert volume.shape == series.hu.shape and volume.spacing_mm == series.spacing_mm
    assert np.allclose(np.diff(volume.positions[:, 2]), 2.5)
