"""Optic-disc / fovea locator: synthetic geometry (fast) and a handful of real IDRiD images (requires_data)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from retinacli.evaluate.landmarks import od_mask_geometry
from retinacli.postprocess.disc_fovea import DiscFovea, combine_dd, locate_disc_fovea
from retinacli.postprocess.disc_fovea_maps import make_work_canvas
from retinacli.postprocess.fundus_geometry import QUADRANT_METHODS, fundus_axes, tilt_deg
from retinacli.preprocess.fov import fov_circle
from conftest import DATASETS, requires_data


def synthetic_fundus(h: int = 400, w: int = 600, disc=(470, 190), fovea=(322, 205), dd: int = 56,
                     bright: bool = True, dark: bool = True, seed: int = 0):
    """RGB uint8 [h, w, 3] orange retina in a circular FOV, a bright disc and a dark fovea at known spots.

    Returns (rgb, fov bool [h, w]). The FOV diameter (~400 px) makes the expected DD 0.139 x 400 = 56 px;
    the default fovea sits 2.65 DD from the disc, 5.8 deg below the horizontal (§3.1). ``disc`` and ``fovea``
    are pixel indices: their centres lie at index + 0.5 in the locator's continuous coordinates.
    """
    rng = np.random.default_rng(seed)
    fov = np.zeros((h, w), np.uint8)
    cv2.circle(fov, (w // 2, h // 2), 200, 1, -1)
    img = np.zeros((h, w, 3), np.float32)
    img[:] = (180, 90, 40)
    yy, xx = np.mgrid[:h, :w]
    if bright:
        r2 = (xx - disc[0]) ** 2 + (yy - disc[1]) ** 2
        img += (np.exp(-r2 / (2 * (dd / 2.5) ** 2)) * 1.0)[..., None] * np.array([70, 120, 110], np.float32)
    if dark:
        r2 = (xx - fovea[0]) ** 2 + (yy - fovea[1]) ** 2
        img *= (1.0 - 0.35 * np.exp(-r2 / (2 * (dd / 2.0) ** 2)))[..., None]
    img += rng.normal(0, 3, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    img[fov == 0] = 0
    return img, fov.astype(bool)


def test_bright_disc_and_dark_fovea_located():
    rgb, fov = synthetic_fundus()
    r = locate_disc_fovea(rgb, fov)
    assert isinstance(r, DiscFovea)
    assert r.disc_found and r.fovea_found, r.reason
    assert np.hypot(r.disc_x - 470.5, r.disc_y - 190.5) < 6
    assert np.hypot(r.fovea_x - 322.5, r.fovea_y - 205.5) < 12
    assert r.quadrant_method == "disc_fovea"
    assert 0.6 * 56 < r.disc_diameter_px < 1.5 * 56
    # the working DD is the geometric mean of the measured fit and the 0.139 x FOV prior (about 55.6 px here)
    prior = 0.139 * fov_circle(fov).diameter_px
    assert r.dd_method == "fitted_and_prior" and np.isfinite(r.measured_disc_diameter_px)
    assert r.disc_diameter_px == pytest.approx(np.sqrt(r.measured_disc_diameter_px * prior), rel=1e-3)


def test_combine_dd_is_a_weighted_geometric_mean():
    assert combine_dd(100.0, 144.0) == pytest.approx(120.0)
    assert combine_dd(100.0, 144.0, 0.0) == pytest.approx(100.0)
    assert combine_dd(100.0, 144.0, 1.0) == pytest.approx(144.0)
    assert combine_dd(80.0, 80.0) == pytest.approx(80.0)
    for bad in ((0.0, 100.0, 0.5), (100.0, -1.0, 0.5), (100.0, 100.0, 1.5), (float("nan"), 100.0, 0.5)):
        with pytest.raises(ValueError):
            combine_dd(*bad)


def test_mirrored_eye_and_input_scale():
    """Disc on the left (the other eye) and the image at twice the size: answers scale with the input."""
    rgb, fov = synthetic_fundus(disc=(130, 190), fovea=(278, 205))
    big = cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    bfov = cv2.resize(fov.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST).astype(bool)
    r = locate_disc_fovea(big, bfov)
    assert r.disc_found and r.fovea_found, r.reason
    assert np.hypot(r.disc_x - 261, r.disc_y - 381) < 12  # (130.5, 190.5) x 2, continuous coordinates
    assert np.hypot(r.fovea_x - 557, r.fovea_y - 411) < 24


def test_nothing_bright_means_disc_not_found():
    rgb, fov = synthetic_fundus(bright=False, dark=False)
    r = locate_disc_fovea(rgb, fov)
    assert not r.disc_found and not r.fovea_found
    assert np.isnan(r.disc_x) and np.isnan(r.fovea_x)
    assert r.quadrant_method == "image_centred"
    assert r.dd_method == "fov_prior" and r.disc_diameter_px == pytest.approx(0.139 * 400, rel=0.05)
    assert np.isnan(r.measured_disc_diameter_px)
    assert "no bright disc" in r.reason


def test_no_fovea_falls_back_to_estimate():
    rgb, fov = synthetic_fundus(dark=False)
    r = locate_disc_fovea(rgb, fov)
    assert r.disc_found and not r.fovea_found
    assert r.quadrant_method == "disc_only_estimated_fovea" and r.fovea_method == "estimated_from_disc"
    # §3.3 fallback: 2.65 DD toward the FOV centre, 5.6 deg below the horizontal
    dist = np.hypot(r.fovea_x - r.disc_x, r.fovea_y - r.disc_y)
    assert dist / r.disc_diameter_px == pytest.approx(2.65, rel=0.01)
    assert r.fovea_x < r.disc_x
    assert tilt_deg((r.disc_x, r.disc_y), (r.fovea_x, r.fovea_y)) == pytest.approx(-5.6, abs=0.1)


@pytest.mark.parametrize("dark", [True, False])
def test_locator_agrees_with_fundus_axes(dark):
    """The locator's quadrant_method and (estimated) fovea are what fundus_axes gives for its disc/fovea/DD."""
    rgb, fov = synthetic_fundus(dark=dark)
    r = locate_disc_fovea(rgb, fov)
    assert r.quadrant_method in QUADRANT_METHODS
    c = fov_circle(fov)
    ax = fundus_axes((c.cx, c.cy), c.diameter_px, (r.disc_x, r.disc_y),
                     (r.fovea_x, r.fovea_y) if r.fovea_found else None, r.disc_diameter_px)
    assert ax.quadrant_method == r.quadrant_method
    assert ax.fovea_xy == pytest.approx((r.fovea_x, r.fovea_y), abs=1e-6)


def test_pixel_centre_convention():
    """Canvas centre index -> FOV circle centre; a one-pixel mask at index (3, 5) has its centroid at (3.5, 5.5)."""
    rgb, fov = synthetic_fundus()
    wc = make_work_canvas(rgb, fov)
    mid = wc.transform.canvas_px / 2.0 - 0.5
    assert wc.to_input(mid, mid) == pytest.approx((wc.circle.cx, wc.circle.cy))
    assert wc.circle.cx == pytest.approx(300.5, abs=0.5) and wc.circle.cy == pytest.approx(200.5, abs=0.5)
    mask = np.zeros((10, 10), bool)
    mask[5, 3] = True
    assert od_mask_geometry(mask)[:2] == (3.5, 5.5)


def test_vessel_probability_is_used_and_shapes_checked():
    rgb, fov = synthetic_fundus()
    prob = np.zeros(fov.shape, np.float32)
    r = locate_disc_fovea(rgb, fov, prob)
    assert r.disc_method == "brightness+vessels"
    assert locate_disc_fovea(rgb, fov).disc_method == "brightness+vessel_proxy"


def test_empty_fov_is_not_found():
    rgb = np.zeros((100, 120, 3), np.uint8)
    r = locate_disc_fovea(rgb, np.zeros((100, 120), bool))
    assert not r.disc_found and r.quadrant_method == "image_centred"


@requires_data
def test_idrid_real_images_disc_and_fovea():
    """Five IDRiD localisation images (no vessel model, to stay fast): disc within 0.25 DD, fovea within 0.5 DD."""
    from retinacli.evaluate.landmarks import evaluate_landmarks, read_idrid_localisation

    idrid = DATASETS / "IDRiD"
    if not (idrid / "C. Localization_1024px").exists():
        pytest.skip("IDRiD localisation set not present")
    cases = [c for c in read_idrid_localisation(idrid) if c.image_id in
             {"IDRiD_001", "IDRiD_002", "IDRiD_010", "IDRiD_050", "IDRiD_090"}]
    assert len(cases) == 5
    ref_dd = 126.0  # mean IDRiD training OD-mask diameter x 1024/4288 (reference_dd_px; see landmarks.py)
    df = evaluate_landmarks(cases, None, ref_dd_px=ref_dd)
    assert df.disc_found.all()
    assert (df.disc_err_dd <= 0.25).all(), df[["image", "disc_err_dd"]]
    assert (df.fovea_err_dd <= 0.5).sum() >= 4, df[["image", "fovea_err_dd", "reason"]]


def _faint_fovea(depth: float, fovea=(322, 205)):
    """The synthetic fundus with a shallow fovea: green x (1 - depth) at its centre (Gaussian, sigma DD/2)."""
    rgb, fov = synthetic_fundus(dark=False)
    yy, xx = np.mgrid[:fov.shape[0], :fov.shape[1]]
    shade = 1.0 - depth * np.exp(-((xx - fovea[0]) ** 2 + (yy - fovea[1]) ** 2) / (2 * 28.0 ** 2))
    return np.clip(rgb.astype(np.float32) * shade[..., None], 0, 255).astype(np.uint8), fov


def test_faint_dip_near_the_estimate_is_kept_and_labelled(monkeypatch):
    """A 1-3% dip (too faint for the 3% rule) that agrees with the disc-based estimate is the fovea, with its
    own fovea_method; without the agreement (max shift 0 DD) the estimate is used instead."""
    import retinacli.postprocess.disc_fovea as locator

    rgb, fov = _faint_fovea(0.06)
    r = locate_disc_fovea(rgb, fov)
    assert locator.FOVEA_MAX_DARKNESS < r.fovea_darkness <= locator.FOVEA_WEAK_DARKNESS
    assert r.fovea_found and r.fovea_method == "faint_dip_near_estimate" and r.quadrant_method == "disc_fovea"
    assert np.hypot(r.fovea_x - 322.5, r.fovea_y - 205.5) < 20
    monkeypatch.setattr(locator, "FOVEA_WEAK_MAX_SHIFT_DD", 0.0)
    r = locate_disc_fovea(rgb, fov)
    assert not r.fovea_found and r.fovea_method == "estimated_from_disc" and "no dark fovea" in r.reason


def test_vessel_free_map_peaks_between_vessels():
    """Distance to the nearest model vessel, in DD and capped: ~0 on a vessel, largest midway between two."""
    from retinacli.postprocess.disc_fovea import FOVEA_VESSEL_FREE_CAP_DD, vessel_free_map

    rgb, fov = synthetic_fundus()
    prob = np.zeros(fov.shape, np.float32)
    prob[:, 250] = prob[:, 350] = 1.0          # two vertical vessels 100 input px apart, centre line x = 300
    wc = make_work_canvas(rgb, fov, prob)
    m = vessel_free_map(wc, wc.dd_prior_px)
    t = wc.transform                           # input (x, y) -> canvas (x * scale + tx, y * scale + ty)
    to_c = lambda x, y: (int(round(x * t.scale + t.tx)), int(round(y * t.scale + t.ty)))
    (v1, cy), (mid, _), (v2, _) = to_c(250, 200), to_c(300, 200), to_c(350, 200)
    row = m[cy]
    assert m.dtype == np.float32 and m.max() <= FOVEA_VESSEL_FREE_CAP_DD + 1e-6
    assert row[mid] > row[v1] and row[mid] > row[v2]
    assert row[mid] == pytest.approx(row[mid - 3: mid + 4].max(), abs=1e-3)   # the peak is at the midline


def test_pipeline_geometry_uses_the_working_dd_and_reports_its_method():
    """``pipeline.findings``: the axes get the working DD (not the bare prior) and the report says which DD it is."""
    from retinacli.pipeline.findings import geometry_columns, locate_geometry
    from retinacli.preprocess.normalise import ScaleSpec, prepare

    rgb, fov = synthetic_fundus()
    prep = prepare(rgb, ScaleSpec(432, 400), fov_mask=fov)
    geo, axes = locate_geometry(rgb, prep, None)
    assert geo.dd_method == "fitted_and_prior"
    assert axes.dd_px == pytest.approx(geo.disc_diameter_px) and axes.dd_source == "segmented"
    cols = geometry_columns(geo, axes)
    assert cols["disc_diameter_method"] == "fitted_and_prior"
    assert cols["disc_diameter_px"] == pytest.approx(geo.disc_diameter_px, abs=0.05)
