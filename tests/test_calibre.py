"""Vessel calibre perpendicular to the centreline (postprocess.calibre) on synthetic maps of known width."""
from __future__ import annotations

import math

import numpy as np
import pytest

from retinacli.postprocess.calibre import (CalibreConfig, centreline_normals, measure_centreline_widths,
                                           segment_width_stats, widths_along_normals)
from retinacli.postprocess.vessel_graph import mask_to_vessel_graph

SHAPE = (160, 160)


def bar_geometry(angle_deg: float, width: float, shape=SHAPE):
    """(along, perp) distances (px) of every pixel centre from a line through the image centre at ``angle_deg``
    (counter-clockwise from +x, image y down), and the centre (row, col). The centre sits on a pixel centre for an
    odd width and between two pixels for an even one, so an axis-aligned bar has exactly ``width`` pixels across."""
    off = 0.5 if round(width) % 2 == 0 else 0.0
    cy, cx = shape[0] // 2 + off, shape[1] // 2 + off
    rr, cc = np.mgrid[:shape[0], :shape[1]].astype(float)
    a = math.radians(angle_deg)
    d_r, d_c = -math.sin(a), math.cos(a)
    along = (rr - cy) * d_r + (cc - cx) * d_c
    perp = -(rr - cy) * d_c + (cc - cx) * d_r
    return along, perp, (cy, cx)


def bar_mask(angle_deg: float, width: int, length: float = 120.0):
    """bool mask of a bar of ``width`` px (pixel centres with |perp| < width / 2) and ``length`` px."""
    along, perp, centre = bar_geometry(angle_deg, width)
    return (np.abs(perp) < width / 2) & (np.abs(along) <= length / 2), centre


def junctions(graph):
    return [k for k, p in graph.keypoints.items() if p.kind != "end"]


def middle_widths(mask, centre, radius=40.0, vessel_map=None):
    """Per-pixel widths of the centreline pixels within ``radius`` of the bar centre, and the longest segment's
    median width."""
    g = mask_to_vessel_graph(mask)
    cw = measure_centreline_widths(mask if vessel_map is None else vessel_map, g.segment_labels,
                                   keypoint_labels=g.keypoint_labels, junction_ids=junctions(g))
    mid = np.hypot(cw.rows - centre[0], cw.cols - centre[1]) < radius
    longest = max(g.segments.values(), key=lambda s: s.length_px).id
    return cw.width_px[mid], segment_width_stats(cw, g.n_segments)["median_px"][longest]


@pytest.mark.parametrize("angle", [0, 30, 45, 90, 17, 120, 135])
@pytest.mark.parametrize("width", list(range(3, 16)))
def test_bar_width_within_one_pixel_at_every_centreline_pixel(angle, width):
    mask, centre = bar_mask(angle, width)
    w, seg_median = middle_widths(mask, centre)
    assert len(w) >= 40 and np.isfinite(w).all()
    assert np.abs(w - width).max() < 1.0
    assert abs(seg_median - width) < 1.0


@pytest.mark.parametrize("angle", [0, 90])
@pytest.mark.parametrize("width", [3, 4, 7, 10, 15])
def test_axis_aligned_bar_is_exact(angle, width):
    mask, centre = bar_mask(angle, width)
    w, seg_median = middle_widths(mask, centre)
    np.testing.assert_allclose(w, width, atol=1e-9)
    assert seg_median == pytest.approx(width, abs=1e-9)


@pytest.mark.parametrize("angle", [0, 30, 45])
@pytest.mark.parametrize("width", [4.0, 7.3, 11.6])
def test_probability_map_gives_sub_pixel_width(angle, width):
    # a soft edge (linear over 3 px, like a smooth probability map) crossing 0.5 exactly at |perp| = width / 2:
    # the measurement is sub-pixel, not a pixel count
    along, perp, centre = bar_geometry(angle, width)
    prob = np.clip(0.5 + (width / 2 - np.abs(perp)) / 3.0, 0.0, 1.0) * (np.abs(along) <= 60)
    w, seg_median = middle_widths(prob >= 0.5, centre, vessel_map=prob)
    assert np.abs(w - width).max() < 0.25
    assert abs(seg_median - width) < 0.1


@pytest.mark.parametrize("width", [3, 6, 9, 13])
def test_curved_vessel_width(width):
    # a 3/4 ring of radius ~50 px: the width across the curve, not along a fixed axis (radius 50.5 for an even
    # width, so the ring is exactly ``width`` pixels across where it crosses the image axes)
    rr, cc = np.mgrid[:160, :160]
    rho = np.hypot(rr - 80.0, cc - 80.0)
    ang = np.degrees(np.arctan2(rr - 80.0, cc - 80.0))
    mask = (np.abs(rho - 50.0 - 0.5 * (width % 2 == 0)) < width / 2) & (ang > -135) & (ang < 135)
    g = mask_to_vessel_graph(mask)
    cw = measure_centreline_widths(mask, g.segment_labels, keypoint_labels=g.keypoint_labels,
                                   junction_ids=junctions(g))
    a = np.degrees(np.arctan2(cw.rows - 80.0, cw.cols - 80.0))
    inner = np.abs(a) < 110  # away from the two ends
    assert inner.sum() > 150  # ~192 px of arc
    assert np.abs(cw.width_px[inner] - width).max() < 1.0


def test_normals_are_perpendicular_to_the_centreline():
    lab = np.zeros((40, 40), np.int32)
    lab[20, 5:35] = 1  # horizontal
    lab[5:35, 3] = 2  # vertical
    n = centreline_normals(lab, np.array([20, 20]), np.array([20, 3]), radius_px=5)
    np.testing.assert_allclose(np.abs(n), [[1, 0], [0, 1]], atol=1e-12)
    lone = np.zeros((10, 10), np.int32)
    lone[5, 5] = lone[5, 6] = 1  # two pixels: no direction
    assert np.isnan(centreline_normals(lone, np.array([5]), np.array([5]), 5)).all()


def test_width_is_nan_off_the_vessel_or_beyond_the_search_range():
    m = np.zeros((50, 50), bool)
    m[20:30, :] = True  # 10 px horizontal band
    normal = np.array([[1.0, 0.0], [1.0, 0.0]])
    w = widths_along_normals(m, np.array([24, 5]), np.array([25, 25]), normal)
    assert w[0] == pytest.approx(10.0) and np.isnan(w[1])  # row 5 is background
    narrow = CalibreConfig(max_half_width_px=4.0)
    assert np.isnan(widths_along_normals(m, np.array([24]), np.array([25]), normal[:1], narrow)[0])


def test_segment_statistics_are_median_and_mean_of_valid_pixels():
    m = np.zeros((30, 60), bool)
    m[10:15, 5:55] = True  # 5 px bar
    m[10:19, 30:55] = True  # widens to 9 px on the right part
    lab = np.zeros(m.shape, np.int32)
    lab[12, 10:50] = 1
    cw = measure_centreline_widths(m, lab)
    st = segment_width_stats(cw, 1)
    w = cw.width_px[np.isfinite(cw.width_px)]
    assert st["median_px"][1] == pytest.approx(np.median(w)) and st["mean_px"][1] == pytest.approx(w.mean())
    assert st["n_valid"][1] == len(w) and np.isnan(st["median_px"][0])
    assert cw.width_px[cw.cols == 15][0] == pytest.approx(5.0)


def test_pixels_near_a_junction_are_excluded_from_segment_statistics():
    # a T: the profile of the stem's pixels next to the bar runs along the bar and would be far too wide
    m = np.zeros((80, 80), bool)
    m[20:27, 5:75] = True  # 7 px horizontal bar
    m[20:75, 37:42] = True  # 5 px vertical stem
    g = mask_to_vessel_graph(m)
    cw = measure_centreline_widths(m, g.segment_labels, keypoint_labels=g.keypoint_labels,
                                   junction_ids=junctions(g))
    assert cw.near_junction.any()
    st = segment_width_stats(cw, g.n_segments)
    stem = g.segment_labels[60, 39]
    assert abs(st["median_px"][stem] - 5.0) < 0.5
    assert np.abs(cw.width_px[cw.valid & (cw.segment == stem)] - 5.0).max() < 1.0
