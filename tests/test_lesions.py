"""Unit tests for retinacli.postprocess.lesions on small synthetic masks (exact values)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from retinacli.postprocess.lesions import (Lesion, equivalent_diameter_px, lesion_components, lesion_from_pixels,
                                           min_distance_to_point_px)


def _mask(h: int = 20, w: int = 30) -> np.ndarray:
    return np.zeros((h, w), bool)


def test_empty_mask_has_no_components():
    assert lesion_components(_mask()) == []


def test_square_component_exact_stats():
    m = _mask()
    m[4:7, 10:13] = True  # 3x3 square, rows 4..6, cols 10..12
    (les,) = lesion_components(m)
    assert les.label == 1
    assert les.area_px == 9
    assert les.equivalent_diameter_px == pytest.approx(math.sqrt(36 / math.pi))
    assert les.centroid_xy == pytest.approx((11.5, 5.5))  # pixel centres at index + 0.5
    assert les.bbox_xywh == (10, 4, 3, 3)
    assert les.eccentricity == pytest.approx(0.0)
    assert sorted(map(tuple, les.pixels_xy.tolist())) == [(x, y) for x in range(10, 13) for y in range(4, 7)]


def test_eight_connectivity_joins_diagonal_neighbours():
    m = _mask()
    m[2, 2] = m[3, 3] = m[4, 4] = True  # diagonal chain: one component with 8-connectivity
    m[10, 20] = True
    comps = lesion_components(m)
    assert [c.area_px for c in comps] == [3, 1]
    assert comps[0].centroid_xy == pytest.approx((3.5, 3.5))
    assert comps[0].eccentricity == pytest.approx(1.0)  # a line


def test_min_area_filter_keeps_cv2_label_ids():
    m = _mask()
    m[1, 1] = True  # label 1, area 1
    m[5:7, 5:7] = True  # label 2, area 4
    m[10:12, 20:23] = True  # label 3, area 6
    comps = lesion_components(m, min_area_px=4)
    assert [(c.label, c.area_px) for c in comps] == [(2, 4), (3, 6)]
    assert [c.label for c in lesion_components(m, min_area_px=5)] == [3]
    assert lesion_components(m, min_area_px=7) == []


def test_non_bool_masks_and_bad_inputs():
    m = np.zeros((8, 8), np.uint8)
    m[2:4, 2:4] = 255
    assert [c.area_px for c in lesion_components(m)] == [4]
    with pytest.raises(ValueError):
        lesion_components(np.zeros((2, 2, 3), bool))
    with pytest.raises(ValueError):
        lesion_components(m, min_area_px=0)


def test_pixels_are_read_only_and_equality_ignores_them():
    m = _mask()
    m[3:5, 3:5] = True
    (a,) = lesion_components(m)
    with pytest.raises(ValueError):
        a.pixels_xy[0, 0] = 99
    (b,) = lesion_components(m.copy())
    assert a == b


def test_lesion_from_pixels_matches_lesion_components():
    m = _mask()
    m[6:9, 15] = True
    m[8, 16] = True  # an L of 4 pixels
    (from_mask,) = lesion_components(m)
    rows, cols = np.nonzero(m)
    built = lesion_from_pixels(from_mask.label, np.stack([cols, rows], axis=1))
    assert built == from_mask
    assert built.eccentricity == pytest.approx(from_mask.eccentricity)
    with pytest.raises(ValueError):
        lesion_from_pixels(1, np.zeros((0, 2), int))


def test_equivalent_diameter_of_circle_area():
    assert equivalent_diameter_px(math.pi * 25) == pytest.approx(10.0)
    assert equivalent_diameter_px(0) == 0.0


def test_min_distance_to_point_uses_nearest_pixel_centre():
    m = _mask()
    m[5, 10:15] = True  # centres (10.5..14.5, 5.5)
    (les,) = lesion_components(m)
    assert min_distance_to_point_px(les, (20.5, 5.5)) == pytest.approx(6.0)
    assert min_distance_to_point_px(les, (12.5, 9.5)) == pytest.approx(4.0)
    assert min_distance_to_point_px(les, (7.5, 1.5)) == pytest.approx(5.0)  # 3-4-5 to (10.5, 5.5)
    assert min_distance_to_point_px(les, (11.5, 5.5)) == 0.0
    assert min_distance_to_point_px(m, (20.5, 5.5)) == pytest.approx(6.0)  # whole mask


def test_min_distance_to_empty_mask_is_inf():
    assert min_distance_to_point_px(_mask(), (1.0, 1.0)) == math.inf
    with pytest.raises(ValueError):
        min_distance_to_point_px(np.zeros(5, bool), (0, 0))


def test_lesion_is_frozen():
    les = lesion_from_pixels(1, np.array([[0, 0]]))
    assert isinstance(les, Lesion)
    with pytest.raises(AttributeError):
        les.area_px = 3  # type: ignore[misc]
