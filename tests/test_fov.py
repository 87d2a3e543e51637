"""Unit tests for FOV estimation (retinacli.preprocess.fov) and the canvas transform (retinacli.preprocess.normalise)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from retinacli.preprocess.fov import FovCircle, estimate_fov, estimate_fov_mask, fit_circle, fov_circle
from retinacli.preprocess.normalise import ScaleSpec, from_canvas, make_transform, prepare, to_canvas

SPEC = ScaleSpec(canvas_px=256, fov_diameter_px=240)


def draw_disc(h: int, w: int, cx: int, cy: int, r: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A reddish noisy disc on a (slightly noisy) black background -> (rgb uint8, disc mask bool)."""
    rng = np.random.default_rng(seed)
    disc = np.zeros((h, w), np.uint8)
    cv2.circle(disc, (cx, cy), r, 1, -1)
    img = np.zeros((h, w, 3), np.float32)
    img[disc > 0] = (185, 85, 40)
    img += rng.normal(0, 6, img.shape) * disc[..., None]
    img += rng.uniform(0, 4, img.shape)  # sensor/JPEG noise in the black border
    return np.clip(img, 0, 255).astype(np.uint8), disc > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def smooth_field(h: int, w: int) -> np.ndarray:
    """A smooth float32 image in [0, 1] (features much larger than a pixel at either scale)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return (0.5 + 0.25 * np.sin(2 * np.pi * xx / (0.9 * w)) + 0.2 * np.cos(2 * np.pi * yy / (0.8 * h))).astype(np.float32)


CASES = [  # h, w, cx, cy, r
    (240, 320, 160, 120, 110),     # small, below the working size
    (480, 640, 322, 236, 220),     # working size, slightly off-centre
    (900, 1200, 598, 452, 420),    # estimated at reduced resolution
]


# ---------------------------------------------------------------- estimate_fov_mask / fov_circle


@pytest.mark.parametrize("h,w,cx,cy,r", CASES)
def test_estimated_fov_mask_matches_drawn_disc(h, w, cx, cy, r):
    rgb, disc = draw_disc(h, w, cx, cy, r)
    mask = estimate_fov_mask(rgb)
    assert mask.shape == (h, w) and mask.dtype == bool
    assert iou(mask, disc) > 0.97


@pytest.mark.parametrize("h,w,cx,cy,r", CASES)
def test_fov_circle_recovers_centre_and_radius(h, w, cx, cy, r):
    rgb, disc = draw_disc(h, w, cx, cy, r, seed=1)
    for mask in (disc, estimate_fov_mask(rgb)):
        c = fov_circle(mask)
        assert c.fitted
        assert abs(c.cx - cx) <= 2 and abs(c.cy - cy) <= 2
        assert abs(c.r - r) <= 2
        assert c.diameter_px == pytest.approx(2 * c.r)


def test_dark_underexposed_fundus_still_found():
    rgb, disc = draw_disc(300, 400, 200, 150, 130)
    dark = (rgb.astype(np.float32) * 0.2).astype(np.uint8)  # retina at ~37 grey levels
    assert iou(estimate_fov_mask(dark), disc) > 0.97


def test_burned_in_text_touching_the_border_is_not_fov():
    rgb, disc = draw_disc(300, 400, 200, 150, 130)
    rgb[5:14, 2:60] = 255  # a thin white label in the corner, away from the disc
    mask = estimate_fov_mask(rgb)
    assert not mask[5:14, 2:60].any()
    assert iou(mask, disc) > 0.97


def test_fov_clipped_top_and_bottom():
    h, w, cx, cy, r = 400, 600, 300, 200, 230  # radius > h / 2: disc cut by the top and bottom border
    rgb, disc = draw_disc(h, w, cx, cy, r)
    assert disc[0].any() and disc[-1].any()
    mask = estimate_fov_mask(rgb)
    assert iou(mask, disc) > 0.97
    c = fov_circle(mask)
    assert c.fitted
    assert abs(c.cx - cx) <= 2 and abs(c.cy - cy) <= 2 and abs(c.r - r) <= 2


def test_fov_clipped_top_bottom_and_left_needs_the_fit():
    h, w, cx, cy, r = 400, 600, 200, 200, 230  # also cut on the left: the bounding box is 430 x 400
    _, disc = draw_disc(h, w, cx, cy, r)
    c = fov_circle(disc)
    assert c.fitted
    assert abs(c.cx - cx) <= 2 and abs(c.cy - cy) <= 2 and abs(c.r - r) <= 2  # bbox would say r = 215


def test_fov_circle_falls_back_to_bbox_for_tiny_or_empty_masks():
    m = np.zeros((50, 60), bool)
    m[10:13, 20:24] = True  # too few boundary points for a fit
    c = fov_circle(m)
    assert not c.fitted
    assert (c.cx, c.cy, c.r) == (22.0, 11.5, 2.0)
    empty = fov_circle(np.zeros((50, 60), bool))
    assert not empty.fitted and (empty.cx, empty.cy, empty.r) == (30.0, 25.0, 30.0)


def test_black_image_gives_whole_image_fov():
    assert estimate_fov_mask(np.zeros((100, 120, 3), np.uint8)).all()


# ---------------------------------------------------------------- fit_circle


def test_fit_circle_exact_points():
    t = np.linspace(0, 2 * np.pi, 50, endpoint=False)
    xs, ys = 12.3 + 7.7 * np.cos(t), -4.5 + 7.7 * np.sin(t)
    cx, cy, r = fit_circle(xs, ys)
    assert cx == pytest.approx(12.3, abs=1e-9) and cy == pytest.approx(-4.5, abs=1e-9)
    assert r == pytest.approx(7.7, abs=1e-9)


def test_fit_circle_partial_arc_and_integer_input():
    t = np.linspace(0.2, 1.4, 30)  # a quarter-circle arc only
    xs, ys = 300 + 250 * np.cos(t), 200 + 250 * np.sin(t)
    cx, cy, r = fit_circle(xs, ys)
    assert (cx, cy, r) == pytest.approx((300, 200, 250), abs=1e-6)
    cx, cy, r = fit_circle(np.array([0, 10, 0, -10]), np.array([10, 0, -10, 0]))  # int arrays
    assert (cx, cy, r) == pytest.approx((0, 0, 10), abs=1e-9)


# ---------------------------------------------------------------- transform, canvas, inverse


def test_make_transform_maps_circle_centre_to_canvas_centre():
    c = FovCircle(cx=321.5, cy=240.0, r=200.0, fitted=True)
    t = make_transform(c, 480, 640, SPEC)
    assert t.scale == pytest.approx(SPEC.fov_diameter_px / 400.0)
    assert (t.input_h, t.input_w, t.canvas_px) == (480, 640, SPEC.canvas_px)
    m = t.matrix()
    # continuous coordinates: the circle centre lands on the canvas centre (pixel x covers [x, x + 1))
    centre = m @ np.array([c.cx - 0.5, c.cy - 0.5, 1.0]) + 0.5
    assert centre == pytest.approx([SPEC.canvas_px / 2, SPEC.canvas_px / 2])
    # and the inverse matrix undoes it
    full = np.vstack([m, [0, 0, 1]])
    inv = np.vstack([t.inverse_matrix(), [0, 0, 1]])
    np.testing.assert_allclose(inv @ full, np.eye(3), atol=1e-12)


def _extent(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(x centre, y centre, width, height) of a mask's bounding box, in pixel-index coordinates."""
    ys, xs = np.nonzero(mask)
    return (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


@pytest.mark.parametrize("h,w,cx,cy,r", [
    (600, 800, 405, 298, 276),    # down-scaling (scale ~0.43)
    (100, 120, 61, 49, 46),       # up-scaling (scale ~2.6)
])
def test_canvas_fov_is_centred_with_the_model_diameter(h, w, cx, cy, r):
    rgb, _ = draw_disc(h, w, cx, cy, r)
    prep = prepare(rgb, SPEC)
    assert prep.canvas.shape == (SPEC.canvas_px, SPEC.canvas_px, 3) and prep.canvas.dtype == np.uint8
    assert prep.canvas_fov.shape == (SPEC.canvas_px, SPEC.canvas_px) and prep.canvas_fov.dtype == bool
    ex, ey, ew, eh = _extent(prep.canvas_fov)
    mid = SPEC.canvas_px / 2 - 0.5  # index coordinates of the canvas centre
    assert abs(ex - mid) <= 2 and abs(ey - mid) <= 2
    tol = max(3.0, 0.03 * SPEC.fov_diameter_px)
    assert abs(ew - SPEC.fov_diameter_px) <= tol and abs(eh - SPEC.fov_diameter_px) <= tol
    # the FOV occupies the disc area; none of it is cut off by the canvas edges
    area = prep.canvas_fov.sum() / (np.pi * (SPEC.fov_diameter_px / 2) ** 2)
    assert 0.95 < area < 1.06
    assert not prep.canvas_fov[0].any() and not prep.canvas_fov[-1].any()


@pytest.mark.parametrize("h,w,cx,cy,r", [
    (600, 800, 405, 298, 276),    # down-scaling: to_canvas pre-shrinks with INTER_AREA
    (100, 120, 61, 49, 46),       # up-scaling
])
def test_from_canvas_inverts_to_canvas_inside_fov(h, w, cx, cy, r):
    _, disc = draw_disc(h, w, cx, cy, r)
    t = make_transform(fov_circle(disc), h, w, SPEC)
    x = smooth_field(h, w)
    back = from_canvas(to_canvas(x, t), t)
    assert back.shape == (h, w) and back.dtype == np.float32
    inner = np.zeros((h, w), np.uint8)
    cv2.circle(inner, (cx, cy), int(r * 0.95), 1, -1)
    err = np.abs(back - x)[inner > 0]
    assert err.max() < 0.003 and err.mean() < 0.0005
    # a half-pixel slip in either direction would show: compare with a shifted copy
    shifted = np.abs(np.roll(x, 1, axis=1) - x)[inner > 0].mean()
    assert err.mean() < shifted


def test_from_canvas_of_uint8_nearest_mask_round_trip():
    h, w, cx, cy, r = 300, 400, 200, 150, 130
    _, disc = draw_disc(h, w, cx, cy, r)
    t = make_transform(fov_circle(disc), h, w, SPEC)
    canvas = to_canvas(disc.astype(np.uint8) * 255, t, interpolation=cv2.INTER_NEAREST)
    back = from_canvas(canvas, t, interpolation=cv2.INTER_NEAREST) > 127
    assert iou(back, disc) > 0.98


def test_prepare_zeroes_pixels_outside_fov():
    h, w, cx, cy, r = 300, 400, 200, 150, 130
    rgb, disc = draw_disc(h, w, cx, cy, r)
    rgb[~disc] = 9  # a grey but sub-threshold border
    prep = prepare(rgb, SPEC)
    plain = to_canvas(rgb, prep.transform)
    assert plain[~prep.canvas_fov].any()  # without masking the border would be non-zero ...
    assert (prep.canvas[~prep.canvas_fov] == 0).all()  # ... prepare() blanks it
    assert (prep.canvas[prep.canvas_fov].max(axis=1) > 0).mean() > 0.99
    assert prep.fov_mask.shape == (h, w) and iou(prep.fov_mask, disc) > 0.97


def test_prepare_with_given_fov_mask_overrides_the_estimate():
    rng = np.random.default_rng(0)
    h, w = 200, 260
    rgb = rng.integers(100, 256, (h, w, 3), dtype=np.uint8)  # bright everywhere: the estimate would be all
    disc = np.zeros((h, w), np.uint8)
    cv2.circle(disc, (130, 100), 80, 1, -1)
    prep = prepare(rgb, SPEC, fov_mask=disc > 0)
    assert prep.circle.fitted and abs(prep.circle.r - 80) <= 2
    assert (prep.canvas[~prep.canvas_fov] == 0).all()
    assert (prep.canvas[prep.canvas_fov] > 0).any(axis=1).all()
    np.testing.assert_array_equal(prep.fov_mask, disc > 0)


def test_estimate_fov_refuses_a_grayscale_array():
    with pytest.raises(ValueError, match="RGB"):
        estimate_fov(np.zeros((40, 50), np.uint8))
