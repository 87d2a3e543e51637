"""Vessel biomarkers (postprocess.biomarkers, postprocess.vessel_shape): zones, Knudtson CRAE/CRVE/AVR on synthetic
radial vessel maps of known widths, reasons, scale, tortuosity and fractal dimension. Expected values are computed
by hand here, never by the functions under test."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from retinacli.postprocess.biomarkers import (DISC_NOT_FOUND, INSUFFICIENT_VESSELS, SCALE_UNKNOWN, ImageScale,
                                              compute_biomarkers, knudtson_combine, resolve_scale,
                                              segment_av_from_label_map, zone_b_vessels, zone_mask, zone_radii)
from retinacli.postprocess.vessel_graph import mask_to_vessel_graph
from retinacli.postprocess.vessel_shape import (TortuosityConfig, box_counts, default_box_sizes, fractal_dimension,
                                                segment_tortuosity)

# hand-computed Knudtson values (§4.2) for the widths used below
ART = [4, 6, 7, 9, 11, 13]
VEN = [5, 8, 10, 12, 14, 15]
# arterioles: (7,9) (6,11) (4,13) -> 0.88*sqrt(130), 0.88*sqrt(157), 0.88*sqrt(185) (already ascending);
# then smallest with largest, middle carried; then the last pair
_A1 = [0.88 * math.sqrt(7 ** 2 + 9 ** 2), 0.88 * math.sqrt(6 ** 2 + 11 ** 2), 0.88 * math.sqrt(4 ** 2 + 13 ** 2)]
_A2 = 0.88 * math.sqrt(_A1[0] ** 2 + _A1[2] ** 2)  # 13.744 > carried _A1[1] = 11.026
CRAE_HAND = 0.88 * math.sqrt(_A1[1] ** 2 + _A2 ** 2)
# venules: (10,12) (5,15) (8,14) -> 0.95*sqrt(244), 0.95*sqrt(250), 0.95*sqrt(260) (ascending)
_V1 = [0.95 * math.sqrt(10 ** 2 + 12 ** 2), 0.95 * math.sqrt(5 ** 2 + 15 ** 2), 0.95 * math.sqrt(8 ** 2 + 14 ** 2)]
_V2 = 0.95 * math.sqrt(_V1[0] ** 2 + _V1[2] ** 2)  # 20.261 > carried _V1[1] = 15.021
CRVE_HAND = 0.95 * math.sqrt(_V1[1] ** 2 + _V2 ** 2)

H = W = 360
DISC_XY = (180.0, 180.0)  # continuous px: the corner shared by pixels (179, 179) and (180, 180)
DISC_R = 40.0  # zone B = 80..120 px
_YY, _XX = np.mgrid[:H, :W]
_X, _Y = _XX + 0.5, _YY + 0.5  # pixel centres
FOV = np.hypot(_X - DISC_XY[0], _Y - DISC_XY[1]) < 178


def radial(angle_deg: float, width: float, r0: float = 45.0, r1: float = 170.0) -> np.ndarray:
    """bool [H, W] straight vessel of ``width`` px along the ray from the disc centre at ``angle_deg``, r0..r1 px."""
    a = math.radians(angle_deg)
    ux, uy = math.cos(a), math.sin(a)
    along = (_X - DISC_XY[0]) * ux + (_Y - DISC_XY[1]) * uy
    perp = -(_X - DISC_XY[0]) * uy + (_Y - DISC_XY[1]) * ux
    return (np.abs(perp) < width / 2) & (along >= r0) & (along <= r1)


def segment_between(p0, p1, width: float) -> np.ndarray:
    """bool [H, W] straight vessel of ``width`` px from point p0 to p1 (x, y)."""
    d = np.subtract(p1, p0, dtype=float)
    length = float(np.hypot(*d))
    ux, uy = d / length
    along = (_X - p0[0]) * ux + (_Y - p0[1]) * uy
    perp = -(_X - p0[0]) * uy + (_Y - p0[1]) * ux
    return (np.abs(perp) < width / 2) & (along >= 0) & (along <= length)


def polar(rho: float, angle_deg: float):
    a = math.radians(angle_deg)
    return DISC_XY[0] + rho * math.cos(a), DISC_XY[1] + rho * math.sin(a)


def run(arteries: np.ndarray, veins: np.ndarray, **kw):
    mask = (arteries | veins) & FOV
    av = np.where(arteries, 1, np.where(veins, 2, 0)).astype(np.uint8)
    graph = mask_to_vessel_graph(mask)
    seg_av = segment_av_from_label_map(graph, av)
    kw.setdefault("disc_xy", DISC_XY)
    kw.setdefault("disc_diameter_px", 2 * DISC_R)
    return compute_biomarkers(mask, FOV, segment_av=seg_av, graph=graph, **kw), graph, seg_av, mask


def radial_pattern(art=ART, ven=VEN):
    """Six arteries at 7 + 60k deg and six veins at 37 + 60k deg (30 deg apart, never touching)."""
    a = np.zeros((H, W), bool)
    v = np.zeros((H, W), bool)
    for i, w in enumerate(art):
        a |= radial(7 + 60 * i, w)
    for i, w in enumerate(ven):
        v |= radial(37 + 60 * i, w)
    return a, v


# --- zones ------------------------------------------------------------------------------------------------------

def test_zone_radii_are_exact():
    assert zone_radii(40.0, "A") == (40.0, 80.0)
    assert zone_radii(40.0, "B") == (80.0, 120.0)
    assert zone_radii(40.0, "C") == (80.0, 200.0)
    assert zone_radii(40.0) == (80.0, 120.0)


def test_zone_mask_bounds_are_inclusive_and_b_differs_from_c():
    disc = (50.5, 50.5)  # centre of pixel (50, 50)
    b = zone_mask((101, 260), disc, 40.0, "B")
    assert b[50, 50 + 80] and b[50, 50 + 120]  # ρ = 80 and 120 exactly
    assert not b[50, 50 + 79] and not b[50, 50 + 121]
    assert b[50 + 80, 50] if 50 + 80 < 101 else True
    c = zone_mask((101, 260), disc, 40.0, "C")
    assert c[50, 50 + 200] and not c[50, 50 + 201] and not b[50, 50 + 150]
    assert c.sum() > b.sum()  # AutoMorph issue 2: zone B written as zone C
    a = zone_mask((101, 260), disc, 40.0, "A")
    assert a[50, 90] and a[50, 130] and not a[50, 89] and not a[50, 131]
    rr, cc = np.nonzero(b)
    rho = np.hypot(cc + 0.5 - disc[0], rr + 0.5 - disc[1])
    assert rho.min() == 80.0 and rho.max() == 120.0


# --- Knudtson ---------------------------------------------------------------------------------------------------

def test_knudtson_combine_equals_hand_computation():
    assert knudtson_combine(ART, "artery") == pytest.approx(CRAE_HAND, rel=1e-12)
    assert knudtson_combine(VEN, "vein") == pytest.approx(CRVE_HAND, rel=1e-12)
    assert CRAE_HAND == pytest.approx(15.506110, abs=1e-6)  # the numbers, written out once
    assert CRVE_HAND == pytest.approx(23.960653, abs=1e-6)


def test_knudtson_uses_the_six_largest_in_any_order():
    assert knudtson_combine([13, 2, 9, 4, 1, 11, 7, 6], "artery") == pytest.approx(CRAE_HAND, rel=1e-12)
    assert knudtson_combine(list(reversed(VEN)), "vein") == pytest.approx(CRVE_HAND, rel=1e-12)


def test_knudtson_equal_widths_and_fewer_than_six():
    # six equal widths w: 6 -> 3 x 0.88 sqrt(2) w -> (0.88 sqrt 2)^2 w and 0.88 sqrt(2) w -> 0.88 sqrt(w1^2 + w2^2)
    w = 10.0
    s1 = 0.88 * math.sqrt(2) * w
    s2 = 0.88 * math.sqrt(2) * s1
    assert knudtson_combine([w] * 6, "artery") == pytest.approx(0.88 * math.sqrt(s1 ** 2 + s2 ** 2), rel=1e-12)
    assert math.isnan(knudtson_combine([10, 9, 8, 7, 6], "artery"))
    assert math.isnan(knudtson_combine([], "vein"))
    with pytest.raises(ValueError):
        knudtson_combine(ART, "arteriole")


# --- CRAE / CRVE / AVR on a synthetic image -----------------------------------------------------------------------

def test_radial_pattern_gives_the_hand_computed_cre():
    a, v = radial_pattern()
    b, *_ = run(a, v, scale=ImageScale(5.0, "camera_fov"))
    assert b.reasons == () and b.n_arterioles_zone_b == 6 and b.n_venules_zone_b == 6
    # each vessel's width within 1 px of the drawn width
    np.testing.assert_array_less(np.abs(np.array(b.arteriole_widths_px) - sorted(ART, reverse=True)), 1.0)
    np.testing.assert_array_less(np.abs(np.array(b.venule_widths_px) - sorted(VEN, reverse=True)), 1.0)
    # CRAE/CRVE = Knudtson of the measured widths exactly, and the hand values of the drawn widths closely
    assert b.crae_px == pytest.approx(knudtson_combine(b.arteriole_widths_px, "artery"), rel=1e-12)
    assert b.crae_px == pytest.approx(CRAE_HAND, abs=0.5)
    assert b.crve_px == pytest.approx(CRVE_HAND, abs=0.5)
    assert b.avr == pytest.approx(b.crae_px / b.crve_px, rel=1e-12)
    assert b.avr == pytest.approx(CRAE_HAND / CRVE_HAND, abs=0.02)
    assert b.crae_um == pytest.approx(5.0 * b.crae_px) and b.crve_um == pytest.approx(5.0 * b.crve_px)
    row = b.as_row()
    assert row["crae_px"] == b.crae_px and row["crae_um"] == b.crae_um and row["scale_source"] == "camera_fov"
    assert row["zone_b_inner_px"] == 80.0 and row["zone_b_outer_px"] == 120.0
    assert row["insufficient_vessels_for_CRE"] is False and row["biomarker_reasons"] == ""


def test_axis_aligned_vessels_are_measured_exactly():
    # on the image axes the mask is exactly ``width`` pixels across (even widths: the disc centre is a pixel corner),
    # so the widths entering CRE are exact; four arterioles only -> CRE NaN
    a = radial(0, 8) | radial(180, 10) | radial(90, 12) | radial(270, 14)
    b, *_ = run(a, np.zeros_like(a))
    assert b.arteriole_widths_px == pytest.approx((14, 12, 10, 8), abs=1e-9)
    assert math.isnan(b.crae_px) and math.isnan(b.crve_px) and math.isnan(b.avr)
    assert b.n_venules_zone_b == 0 and INSUFFICIENT_VESSELS in b.reasons


def test_fewer_than_six_vessels_gives_nan_with_reason_and_counts():
    a, v = radial_pattern(art=ART[:4])  # 4 arterioles, 6 venules
    b, *_ = run(a, v)
    assert math.isnan(b.crae_px) and math.isnan(b.avr) and math.isnan(b.crae_um)
    assert b.crve_px == pytest.approx(CRVE_HAND, abs=0.5)  # the complete class is still measured
    assert b.reasons[0] == INSUFFICIENT_VESSELS and SCALE_UNKNOWN in b.reasons
    assert b.n_arterioles_zone_b == 4 and b.n_venules_zone_b == 6
    assert "4 arterioles, 6 venules" in b.reason_detail
    assert b.flags() == {INSUFFICIENT_VESSELS: True, SCALE_UNKNOWN: True}
    assert math.isnan(b.crve_um)  # no scale: px only


def test_vessels_that_stop_before_zone_b_are_not_counted():
    a, v = radial_pattern()
    short = radial(7, 4, r1=75.0)  # the 4 px artery ends in zone A
    a = (a & ~radial(7, 4)) | short
    b, *_ = run(a, v)
    assert b.n_arterioles_zone_b == 5 and INSUFFICIENT_VESSELS in b.reasons


def test_disc_not_found():
    a, v = radial_pattern()
    b, *_ = run(a, v, disc_xy=None, disc_diameter_px=None)
    assert b.reasons == (DISC_NOT_FOUND, SCALE_UNKNOWN)
    assert math.isnan(b.crae_px) and math.isnan(b.crve_px) and math.isnan(b.avr)
    assert math.isnan(b.vessel_density_zone_b) and b.n_arterioles_zone_b == 0
    assert b.vessel_density_fov > 0 and np.isfinite(b.fractal_dimension_d0)  # disc-free measures still there
    assert b.as_row()["biomarker_reasons"] == "disc_not_found;scale_unknown_px_only"


@pytest.mark.parametrize("cross_deg", [45, 60, 90])
def test_a_vessel_split_by_a_crossing_in_zone_b_counts_once(cross_deg):
    # ten radial vessels 24 deg apart (0..216 deg) and, in the free sector, a 13 px artery at 290 deg crossed in the
    # middle of zone B (ρ = 100) by a 5 px vein at ``cross_deg`` to it: both skeletons are cut at the crossing
    # (at 45 deg no clean artery pixel is left in zone B: rule 4c)
    a = np.zeros((H, W), bool)
    v = np.zeros((H, W), bool)
    for i, w in enumerate(ART[:5]):
        a |= radial(48 * i, w)
    for i, w in enumerate(VEN[1:]):
        v |= radial(24 + 48 * i, w)
    a |= radial(290, 13)
    c = np.array(polar(100.0, 290.0))
    d = np.array([math.cos(math.radians(290 + cross_deg)), math.sin(math.radians(290 + cross_deg))])
    v |= segment_between(c - 50 * d, c + 50 * d, 5)
    b, graph, seg_av, mask = run(a, v)
    assert b.n_arterioles_zone_b == 6 and b.n_venules_zone_b == 6
    np.testing.assert_array_less(np.abs(np.array(b.venule_widths_px) - sorted(VEN, reverse=True)), 1.0)
    np.testing.assert_array_less(np.abs(np.array(b.arteriole_widths_px) - sorted(ART, reverse=True)), 1.0)
    vessels = zone_b_vessels(graph, seg_av, mask, DISC_XY, DISC_R)
    assert sum(len(x.segment_ids) >= 2 for x in vessels) == 2  # both were cut, both counted once
    assert b.crae_px == pytest.approx(CRAE_HAND, abs=0.5) and b.crve_px == pytest.approx(CRVE_HAND, abs=0.5)


def test_a_branching_in_zone_b_counts_once_with_the_trunk_width():
    a, v = radial_pattern()
    a &= ~radial(7 + 60 * 4, ART[4])  # the 11 px artery at 247 deg ...
    a |= radial(247, 11, r1=100.0)  # ... becomes a trunk to ρ = 100 (mid zone B)
    a |= segment_between(polar(100.0, 247), polar(165.0, 240), 7)  # and two 7 px daughters
    a |= segment_between(polar(100.0, 247), polar(165.0, 254), 7)
    b, *_ = run(a, v)
    assert b.n_arterioles_zone_b == 6
    np.testing.assert_array_less(np.abs(np.array(b.arteriole_widths_px) - sorted(ART, reverse=True)), 1.0)


def test_vessel_density_zone_b_uses_zone_b_pixels_as_denominator():
    a, v = radial_pattern()
    b, _, _, mask = run(a, v)
    rho = np.hypot(_X - DISC_XY[0], _Y - DISC_XY[1])
    zone = (rho >= 80) & (rho <= 120) & FOV
    assert b.vessel_density_zone_b == pytest.approx(mask[zone].sum() / zone.sum(), rel=1e-12)
    assert b.vessel_density_fov == pytest.approx(mask[FOV].sum() / FOV.sum(), rel=1e-12)


def test_probability_map_calibre_and_row_columns():
    a, v = radial_pattern()
    by_mask, graph, seg_av, mask = run(a, v)
    b = compute_biomarkers(mask, FOV, DISC_XY, 2 * DISC_R, seg_av, graph, prob=mask.astype(np.float32))
    assert b.crae_px == pytest.approx(by_mask.crae_px, rel=1e-12)  # a 0/1 probability map = the mask
    row = b.as_row()
    assert row["calibre_method"] == "perpendicular_profile_probability"
    for col in ("crae_px", "crae_um", "crve_px", "crve_um", "avr", "um_per_px", "scale_source", "vessel_density_fov",
                "vessel_density_zone_b", "tortuosity_distance_factor_median", "tortuosity_index",
                "fractal_dimension_d0", "fd_method", "fd_box_min_px", "fd_box_max_px", "biomarker_reasons",
                "insufficient_vessels_for_CRE", "scale_unknown_px_only", "n_arterioles_zone_b", "n_venules_zone_b"):
        assert col in row
    assert row["fd_method"] == "box_count_occupied" and row["scale_source"] == "none"
    assert math.isnan(row["um_per_px"]) and math.isnan(row["crae_um"]) and row["scale_unknown_px_only"] is True


def test_av_labels_missing():
    a, v = radial_pattern()
    b = compute_biomarkers(a | v, FOV, DISC_XY, 2 * DISC_R)
    assert b.reasons[0] == "av_labels_missing" and math.isnan(b.crae_px)


# --- scale --------------------------------------------------------------------------------------------------------

def test_scale_cascade():
    assert resolve_scale((0.01, 0.01), 45.0, 1000.0, 200.0) == ImageScale(10.0, "dicom_pixel_spacing")
    assert resolve_scale(None, 45.0, 1296.0, 200.0) == ImageScale(45 * 288 / 1296, "camera_fov")
    assert resolve_scale(None, None, 1296.0, 200.0) == ImageScale(1800 / 200, "disc_diameter")
    assert resolve_scale() == ImageScale(None, "none") and not resolve_scale().known
    assert resolve_scale((0.0, 0.0), None, None, -1.0).source == "none"


# --- tortuosity ---------------------------------------------------------------------------------------------------

def _line_mask(p0, p1, thickness=1, shape=(220, 220)):
    m = np.zeros(shape, np.uint8)
    cv2.line(m, p0, p1, 1, thickness)
    return m > 0


@pytest.mark.parametrize("p1", [(200, 100), (200, 31), (180, 180), (120, 200)])  # 0, ~26.6, 45, ~63 deg
def test_tortuosity_of_a_straight_line_is_one(p1):
    t = segment_tortuosity(mask_to_vessel_graph(_line_mask((20, 100) if p1[1] == 100 else (20, 20), p1, 3)))
    assert len(t.segment_ids) == 1
    assert t.median == pytest.approx(1.0, abs=0.003) and t.index == pytest.approx(1.0, abs=0.003)


@pytest.mark.parametrize("radius", [40, 80])
def test_tortuosity_of_a_semicircle_is_half_pi(radius):
    # ring of width 3 around (110, 110) cut at the diameter row: the skeleton ends on the diameter
    rr, cc = np.mgrid[:220, :220]
    mask = (np.abs(np.hypot(rr - 110, cc - 110) - radius) < 1.5) & (rr >= 110)
    t = segment_tortuosity(mask_to_vessel_graph(mask))
    assert len(t.segment_ids) == 1
    assert t.median == pytest.approx(math.pi / 2, abs=0.02)
    # the raw 8-connected length is several % too long: the smoothing is what makes the test pass
    raw = segment_tortuosity(mask_to_vessel_graph(mask), TortuosityConfig(smooth_sigma_px=0.0))
    assert raw.median > math.pi / 2 + 0.05


def test_tortuosity_index_and_minimum_length():
    m = _line_mask((10, 10), (10, 110)) | _line_mask((30, 150), (90, 150)) | _line_mask((200, 10), (200, 15))
    t = segment_tortuosity(mask_to_vessel_graph(m))
    assert len(t.segment_ids) == 2  # the 5 px piece is below min_length_px
    np.testing.assert_allclose(sorted(t.chord_px), [60.0, 100.0])
    assert t.index == pytest.approx(1.0, abs=1e-9) and t.total_length_px == pytest.approx(160.0, abs=1e-6)


# --- fractal dimension ----------------------------------------------------------------------------------------

def test_box_counting_of_a_filled_square_and_a_line():
    square = np.zeros((256, 256), bool)
    square[64:192, 64:192] = True
    fd = fractal_dimension(square)
    assert fd.box_sizes_px == (2, 4, 8, 16, 32)  # 2 .. 256 / 8
    assert fd.counts == (4096, 1024, 256, 64, 16)  # (128 / eps)^2
    assert fd.d0 == pytest.approx(2.0, abs=1e-9)
    line = np.zeros((256, 256), bool)
    line[100, :] = True
    assert fractal_dimension(line).d0 == pytest.approx(1.0, abs=1e-9)
    diag = np.eye(256, dtype=bool)
    assert fractal_dimension(diag).d0 == pytest.approx(1.0, abs=1e-9)


def test_box_counts_count_occupied_boxes_not_boundary_boxes():
    m = np.zeros((8, 8), bool)
    m[:4, :4] = True  # one full 4x4 box: AutoMorph's 0 < n < eps^2 rule would count 0 of them at eps = 4
    m[6, 7] = True
    assert list(box_counts(m, [1, 2, 4, 8])) == [17, 5, 2, 1]
    assert box_counts(np.ones((5, 5), bool), [2]).tolist() == [9]  # partial edge boxes count


def test_fractal_dimension_roi_and_box_range():
    assert default_box_sizes((300, 500)) == (2, 4, 8, 16, 32)
    assert default_box_sizes((300, 500), 3, 0.25) == (4, 8, 16, 32, 64)
    roi = np.zeros((256, 256), bool)
    roi[64:192, 64:192] = True
    full = np.ones((256, 256), bool)
    fd = fractal_dimension(full, roi)  # cleared outside the ROI, grid on the ROI's bounding box
    assert fd.box_sizes_px == (2, 4, 8, 16) and fd.d0 == pytest.approx(2.0, abs=1e-9)
    assert math.isnan(fractal_dimension(np.zeros((256, 256), bool)).d0)
    assert math.isnan(fractal_dimension(full[:10, :10]).d0)  # too small for 3 box sizes
