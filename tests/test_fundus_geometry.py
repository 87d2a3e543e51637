"""Unit tests for retinacli.postprocess.fundus_geometry (clinical-rules §3.2, §3.3), hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from retinacli.postprocess.fundus_geometry import (DD_PER_FOV_DIAMETER, axes_from_disc_fovea, estimate_fovea_xy,
                                                   fundus_axes, points_distance_to_fovea_dd, tilt_deg)

CENTRE = (200.0, 200.0)
FOV_D = 360.0


def _right_eye(**kw):
    """Right eye, not inverted: disc on the right, macula on the left, fovea 10 px below the disc."""
    return fundus_axes(CENTRE, FOV_D, disc_xy=(300, 200), fovea_xy=(150, 210), dd_px=57, **kw)


def _left_eye(**kw):
    return fundus_axes(CENTRE, FOV_D, disc_xy=(100, 200), fovea_xy=(250, 210), dd_px=57, **kw)


def _pair_with_tilt(t_deg: float, dfd_px: float = 150.0, dd_px: float = 57.0, **kw):
    """Right-eye layout with the fovea at tilt ``t_deg`` (positive = fovea above the disc)."""
    t = math.radians(t_deg)
    disc = (300.0, 200.0)
    fovea = (disc[0] - dfd_px * math.cos(t), disc[1] - dfd_px * math.sin(t))
    return fundus_axes(CENTRE, FOV_D, disc_xy=disc, fovea_xy=fovea, dd_px=dd_px, **kw)


def test_right_eye_disc_fovea_axes_and_quadrants():
    ax = _right_eye()
    assert ax.quadrant_method == "disc_fovea"
    assert ax.tilt_deg == pytest.approx(-3.8140748342903543)
    assert ax.dfd_per_dd == pytest.approx(2.637420417258405)
    assert ax.geometry_plausible is True and ax.possibly_inverted is False
    assert ax.u_xy == pytest.approx((-150 / math.hypot(150, 10), 10 / math.hypot(150, 10)))
    assert ax.n_xy[1] < 0 and ax.n_xy == pytest.approx((-10 / math.hypot(150, 10), -150 / math.hypot(150, 10)))
    # macula on the left: temporal = left of the fovea, superior = image-up
    assert ax.quadrant_of((100, 150)) == "ST"
    assert ax.quadrant_of((100, 260)) == "IT"
    assert ax.quadrant_of((200, 150)) == "SN"
    assert ax.quadrant_of((200, 260)) == "IN"
    assert ax.hemifield_of((100, 150)) == "superior" and ax.hemifield_of((200, 260)) == "inferior"
    assert ax.flags() == {"disc_not_found": False, "fovea_not_found": False, "quadrants_image_centred": False,
                          "possibly_inverted": False, "fovea_rejected_implausible": False}


def test_quadrants_follow_the_tilted_raphe_not_the_image_horizontal():
    ax = _right_eye()
    # (50, 215) is below the fovea's row but above the D-F line (y = 216.67 at x = 50): superior
    h = math.hypot(150, 10)  # p - F = (-100, 5); a = (15000 + 50) / h, b = (1000 - 750) / h
    assert ax.axis_coordinates((50, 215)) == pytest.approx((15050 / h, 250 / h))
    assert ax.quadrant_of((50, 215)) == "ST"
    assert ax.quadrant_of((50, 218)) == "IT"


def test_left_eye_disc_fovea_quadrants():
    ax = _left_eye()
    assert ax.quadrant_method == "disc_fovea"
    assert ax.n_xy[1] < 0
    assert ax.quadrant_of((300, 150)) == "ST"  # macula on the right: temporal = right of the fovea
    assert ax.quadrant_of((200, 150)) == "SN"
    assert ax.quadrant_of((300, 260)) == "IT"
    assert ax.quadrant_of((200, 260)) == "IN"


def test_points_on_an_axis_get_no_label():
    ax = fundus_axes(CENTRE, FOV_D, disc_xy=(300, 200), fovea_xy=(150, 200), dd_px=57)
    assert ax.tilt_deg == 0.0
    assert ax.quadrant_of((100, 200)) is None and ax.hemifield_of((100, 200)) is None  # on the raphe
    assert ax.quadrant_of((150, 100)) is None and ax.hemifield_of((150, 100)) == "superior"  # a = 0


def test_known_inversion_swaps_superior_and_inferior_only():
    # the right eye of _pair_with_tilt(-7.59...) rotated 180 degrees in a 400 x 400 frame
    disc, fovea = (100.0, 200.0), (250.0, 180.0)
    plain = fundus_axes(CENTRE, FOV_D, disc_xy=disc, fovea_xy=fovea, dd_px=57)
    inv = fundus_axes(CENTRE, FOV_D, disc_xy=disc, fovea_xy=fovea, dd_px=57, inverted=True)
    p = (300.0, 250.0)  # (100, 150) before the rotation: superior temporal
    assert inv.quadrant_of(p) == "ST" and inv.hemifield_of(p) == "superior"
    assert plain.quadrant_of(p) == "IT" and plain.hemifield_of(p) == "inferior"
    assert plain.tilt_deg == pytest.approx(math.degrees(math.atan2(20, 150)))
    assert plain.possibly_inverted is True and plain.geometry_plausible is False  # kept, flagged
    assert plain.quadrant_method == "disc_fovea"
    assert inv.geometry_plausible is True  # mirrored tilt range [-4.3, +15.5] when inversion is known


@pytest.mark.parametrize("tilt, method, plausible, inverted_flag", [
    (-15.4, "disc_fovea", True, False), (-15.6, "disc_only_estimated_fovea", False, False),
    (4.2, "disc_fovea", True, False), (4.4, "disc_fovea", False, True),
    (15.4, "disc_fovea", False, True), (15.6, "disc_only_estimated_fovea", False, False)])
def test_tilt_plausibility_boundaries(tilt, method, plausible, inverted_flag):
    ax = _pair_with_tilt(tilt)
    assert ax.tilt_deg == pytest.approx(tilt)
    assert ax.quadrant_method == method
    assert ax.geometry_plausible is plausible
    assert ax.possibly_inverted is inverted_flag
    assert ax.fovea_rejected_implausible is (method != "disc_fovea")


@pytest.mark.parametrize("fovea_x, method", [(218, "disc_fovea"), (220, "disc_only_estimated_fovea"),
                                             (170, "disc_fovea"), (168, "disc_only_estimated_fovea")])
def test_dfd_per_dd_plausibility_boundaries(fovea_x, method):
    # DD = 40 px: DFD/DD = 82/40 = 2.05 and 130/40 = 3.25 are kept; 2.0 and 3.3 are rejected
    ax = fundus_axes(CENTRE, FOV_D, disc_xy=(300, 200), fovea_xy=(fovea_x, 200), dd_px=40)
    assert ax.dfd_per_dd == pytest.approx((300 - fovea_x) / 40)
    assert ax.quadrant_method == method
    assert ax.fovea_not_found is (method != "disc_fovea")


def test_disc_only_estimated_fovea_by_hand():
    ax = fundus_axes(CENTRE, FOV_D, disc_xy=(300, 200))
    assert ax.quadrant_method == "disc_only_estimated_fovea"
    assert ax.dd_source == "fov_diameter" and ax.dd_px == pytest.approx(0.139 * 360)
    # F = D + 2.65 * 50.04 * (-cos 5.6, +sin 5.6): toward the FOV centre (left), 5.6 deg downward
    assert ax.fovea_xy == pytest.approx((168.02687539800928, 212.94007800546177))
    assert ax.fovea_estimated and ax.fovea_not_found and not ax.disc_not_found
    assert ax.tilt_deg is None and ax.possibly_inverted is False
    assert ax.quadrant_of((100, 150)) == "ST" and ax.quadrant_of((250, 260)) == "IN"
    assert ax.distance_to_fovea_dd((168.02687539800928 + 50.04, 212.94007800546177)) == pytest.approx(1.0)


def test_estimated_fovea_left_of_centre_and_inverted():
    assert estimate_fovea_xy((100, 200), 50.04, CENTRE) == pytest.approx((231.97312460199072, 212.94007800546177))
    assert estimate_fovea_xy((100, 200), 50.04, CENTRE, inverted=True) == pytest.approx(
        (231.97312460199072, 187.05992199453823))
    assert estimate_fovea_xy((200, 150), 50.0, CENTRE) is None  # disc on the vertical centre line


def test_segmented_dd_is_used_for_the_estimate():
    ax = fundus_axes(CENTRE, FOV_D, disc_xy=(300, 200), dd_px=40)
    assert ax.dd_source == "segmented" and ax.dd_px == 40
    assert ax.fovea_xy == pytest.approx((300 - 106 * math.cos(math.radians(5.6)),
                                         200 + 106 * math.sin(math.radians(5.6))))


def test_neither_found_gives_image_centred_quadrants():
    ax = fundus_axes(CENTRE, FOV_D)
    assert ax.quadrant_method == "image_centred" and ax.quadrants_image_centred
    assert ax.dd_px == pytest.approx(DD_PER_FOV_DIAMETER * FOV_D)
    assert [ax.quadrant_of(p) for p in [(150, 150), (250, 150), (150, 250), (250, 250)]] == ["UL", "UR", "LL", "LR"]
    assert ax.hemifield_of((150, 150)) == "upper" and ax.hemifield_of((150, 250)) == "lower"
    assert ax.quadrant_of((200, 150)) is None and ax.hemifield_of((200, 150)) == "upper"
    assert ax.hemifield_of((150, 200)) is None
    assert math.isnan(ax.distance_to_fovea_dd((1, 1)))
    assert ax.flags() == {"disc_not_found": True, "fovea_not_found": True, "quadrants_image_centred": True,
                          "possibly_inverted": False, "fovea_rejected_implausible": False}


def test_image_centred_labels_are_not_swapped_by_inversion():
    ax = fundus_axes(CENTRE, FOV_D, inverted=True)
    assert ax.quadrant_of((150, 150)) == "UL" and ax.hemifield_of((150, 150)) == "upper"


def test_fovea_without_disc_keeps_fovea_for_distances():
    ax = fundus_axes(CENTRE, FOV_D, fovea_xy=(180, 210), dd_px=50)
    assert ax.quadrant_method == "image_centred"
    assert ax.disc_not_found and not ax.fovea_not_found
    assert ax.distance_to_fovea_dd((180, 260)) == pytest.approx(1.0)
    assert ax.quadrant_of((150, 150)) == "UL"  # about the FOV centre, not the fovea


def test_disc_on_centre_line_falls_back_to_image_centred():
    ax = fundus_axes(CENTRE, FOV_D, disc_xy=(200, 120))
    assert ax.quadrant_method == "image_centred"
    assert ax.fovea_xy is None and ax.fovea_not_found and not ax.disc_not_found


def test_distances_in_dd():
    ax = _right_eye()
    assert ax.distance_to_fovea_dd((207, 210)) == pytest.approx(1.0)
    assert ax.distance_to_fovea_dd((150 + 34.2, 210 + 45.6)) == pytest.approx(1.0)  # 3-4-5 x 11.4
    d = points_distance_to_fovea_dd(ax, np.array([[150, 210], [264, 210], [150, 324]]))
    assert d == pytest.approx([0.0, 2.0, 2.0])
    assert np.isnan(points_distance_to_fovea_dd(fundus_axes(CENTRE, FOV_D), [[1, 2]])).all()


def test_tilt_sign_and_degenerate_axes():
    assert tilt_deg((300, 200), (150, 190)) == pytest.approx(math.degrees(math.atan2(10, 150)))
    assert tilt_deg((100, 200), (250, 215)) == pytest.approx(-math.degrees(math.atan2(15, 150)))
    with pytest.raises(ValueError):
        axes_from_disc_fovea((1, 1), (1, 1))
    with pytest.raises(ValueError):
        axes_from_disc_fovea((1, 1), (1, 50))
    with pytest.raises(ValueError):
        fundus_axes(CENTRE, 0)
    # fovea straight below the disc: |tilt| = 90 -> rejected, estimated fovea used
    assert fundus_axes(CENTRE, FOV_D, disc_xy=(300, 200), fovea_xy=(300, 350), dd_px=57).quadrant_method == \
        "disc_only_estimated_fovea"


def test_nan_points_mean_not_found():
    """The disc/fovea locator reports a missing point as NaN: treated exactly like None."""
    nan = float("nan")
    a = fundus_axes((500.0, 500.0), 1000.0, disc_xy=(800.0, 480.0), fovea_xy=(nan, nan))
    b = fundus_axes((500.0, 500.0), 1000.0, disc_xy=(800.0, 480.0), fovea_xy=None)
    assert a.quadrant_method == b.quadrant_method == "disc_only_estimated_fovea" and a.fovea_not_found
    assert a.fovea_xy == b.fovea_xy
    c = fundus_axes((500.0, 500.0), 1000.0, disc_xy=(nan, 480.0), fovea_xy=None)
    assert c.quadrant_method == "image_centred" and c.disc_not_found
