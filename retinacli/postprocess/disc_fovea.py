"""Optic-disc and fovea locator (clinical-rules.md §3.3). Pure functions on arrays.

Inputs everywhere: RGB uint8 [H, W, 3], FOV mask bool [H, W], optional vessel probability float32 [H, W]
(0..1, e.g. the shipped vessel model mapped back to input resolution). All positions and lengths in the
result are in continuous INPUT pixel coordinates (x right, y down, pixel centre = index + 0.5, the convention of
``preprocess.fov`` and ``fundus_geometry``).

Method (on a FOV-normalised working canvas, FOV diameter 512 px, see disc_fovea_maps.py):
- disc: argmax of  z(disc-shaped mean of background-normalised luminance, diameter = DD prior)
  + 0.5 z(vertical-vessel density, sigma DD/2) + 0.5 z(thick-vessel density, sigma DD/2); the weights were
  chosen on the 54 IDRiD segmentation TRAINING images. Not found when the disc-vs-surround brightness
  contrast is too low.
- disc diameter: vessel-free (closed) luminance thresholded 35% of the way from the surround to the disc core,
  equivalent-circle diameter of the component at the centre (``measured_disc_diameter_px``). The working DD
  (``disc_diameter_px``: fovea search, DD distances, zones) is the geometric mean of that fit and the prior
  0.139 x FOV diameter (``dd_method`` "fitted_and_prior"): on the 54 IDRiD segmentation TRAINING masks both
  estimates have the same log spread (SD of log(estimate / truth) 0.087 fit, 0.090 prior) and their mean has
  less (0.081); it also halves the effect of a fit that caught the peripapillary atrophy or only the disc core.
  The prior assumes a 45 deg field: on CHASE_DB1 (30 deg) the fit is ~1.3 x the prior (median of 12 images), so
  there the working DD is ~12% below the fit. The prior alone (``dd_method`` "fov_prior") when the fit is
  implausible. The micrometre scale uses the measured fit only (``postprocess.biomarkers.resolve_scale``).
- fovea: minimum of green (exudates capped at the local median, smoothed at sigma DD/2, divided by its
  2 DD background) with a vessel-density penalty, a vessel-free bonus (z of the distance to the nearest model
  vessel pixel, capped at 1 DD; only with a model vessel map) and a Gaussian anatomical prior (DFD/DD 2.65 +- 0.30,
  tilt -5.6 +- 3.3 deg), searched in the annulus 2.0-3.3 DD from the disc on the side toward the FOV
  centre, within +-1 DD vertically and 0.85 FOV radius; found only when it is >= 3% darker than the ring
  1.0-1.5 DD around it (or, ``faint_dip_near_estimate``, >= 1% darker than that ring and within 0.75 DD of
  the disc-based estimate below) and plausible (``fundus_geometry.check_disc_fovea_pair``: DFD/DD in [2.05, 3.25], tilt
  in [-15.5, +4.3] deg, mirrored when inverted; stricter than ``fundus_axes``, which keeps a tilt up to +15.5
  deg with ``possibly_inverted``).
- quadrant_method and the fovea fallback come from ``fundus_geometry.fundus_axes`` on the FOV circle, so a
  result fed to ``fundus_axes`` (disc, found fovea, DD) gives the same method and the same estimated fovea
  (§3.3: F = D + 2.65 DD toward the FOV centre, rotated 5.6 deg down).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from retinacli.postprocess.disc_fovea_maps import (WORK_FOV_DIAMETER_PX, WorkCanvas, make_work_canvas, masked_blur,
                                                   zscore)
from retinacli.postprocess.fundus_geometry import (DFD_PER_DD, DFD_PER_DD_SD, DISC_FOVEA, DISC_ONLY_ESTIMATED_FOVEA,
                                                   IMAGE_CENTRED, TILT_MEAN_DEG, TILT_SD_DEG, check_disc_fovea_pair,
                                                   estimate_fovea_xy, fundus_axes, tilt_deg)

DISC_VESSEL_WEIGHTS = (0.5, 0.5)        # (vertical vessels, thick vessels), relative to disc brightness
DISC_MIN_CONTRAST = 1.08                # disc mean / surround median of normalised luminance (train min ~1.2)
DD_FIT_RANGE = (0.75, 1.45)             # accepted fitted DD / prior DD
DD_FIT_LEVEL = 0.35                     # threshold position between surround (0) and disc core (1)
DD_PRIOR_LOG_WEIGHT = 0.5               # working DD = fitted^(1-w) x prior^w: two estimates of equal log spread
FOVEA_ANNULUS_DD = (2.0, 3.3)
FOVEA_MAX_DY_DD = 1.0
FOVEA_MAX_FOV_RADIUS = 0.85             # search within this share of the FOV radius (vignetted rim)
FOVEA_MAX_DARKNESS = 0.97               # fovea green / annulus median green must be below this to count
FOVEA_PRIOR_WEIGHT = 0.5             # weight of the anatomical log-prior against z(darkness)
FOVEA_VESSEL_FREE_WEIGHT = 1.0          # weight of z(distance to the nearest vessel) (model vessel maps only)
FOVEA_VESSEL_FREE_CAP_DD = 1.0          # distance to the nearest vessel counts up to this many DD
VESSEL_MASK_LEVEL = 0.5                 # vessel probability >= this is a vessel for that distance
FOVEA_VESSEL_FREE_MIN_SD_DD = 0.05      # floor of the spread used to z-score that distance (DD)
FOVEA_WEAK_DARKNESS = 0.99              # a candidate darker than this but not FOVEA_MAX_DARKNESS ...
FOVEA_WEAK_MAX_SHIFT_DD = 0.75          # ... is kept when within this many DD of the disc-based estimate


@dataclass(frozen=True)
class DiscFovea:
    """Locator result, continuous input pixels (pixel centre = index + 0.5). Coordinates are NaN when nothing
    (not even an estimate) is available.

    disc_found: the disc was located (False: disc_x/y NaN). disc_diameter_px: the working DD, always set; see
    dd_method (a property: "fitted_and_prior" = geometric mean of the fitted diameter and 0.139 x FOV diameter, or
    "fov_prior" = 0.139 x FOV diameter alone). measured_disc_diameter_px: the fitted diameter alone (NaN when
    there is none): the only one that may set a micrometre scale. fovea_found: a dark (or faint, near the estimate)
    fovea was located and passed the plausibility checks; when False but the disc was found, fovea_x/y hold the
    §3.3 estimate (``fundus_geometry.estimate_fovea_xy``; NaN when the disc sits exactly on the FOV's vertical
    centre line). fovea_method: "dark_green_annulus" (>= 3% darker than its ring), "faint_dip_near_estimate"
    (1-3% darker and within 0.75 DD of the estimate), "estimated_from_disc" (the §3.3 estimate) or "none".
    quadrant_method: one of ``fundus_geometry.QUADRANT_METHODS``, as ``fundus_axes`` decides it (§3.3).
    reason: short human-readable explanation of any fallback ("" when everything was found).
    """

    disc_x: float
    disc_y: float
    disc_diameter_px: float
    disc_found: bool
    measured_disc_diameter_px: float
    fovea_x: float
    fovea_y: float
    fovea_found: bool
    quadrant_method: str
    disc_method: str
    fovea_method: str
    reason: str
    disc_contrast: float
    fovea_darkness: float

    @property
    def dd_method(self) -> str:
        """How ``disc_diameter_px`` was obtained: "fitted_and_prior" when a fit exists, else "fov_prior"."""
        return "fitted_and_prior" if np.isfinite(self.measured_disc_diameter_px) else "fov_prior"


def _disk_kernel(radius: float) -> np.ndarray:
    k = int(np.ceil(radius))
    y, x = np.mgrid[-k:k + 1, -k:k + 1]
    d = (x * x + y * y <= radius * radius).astype(np.float32)
    return d / d.sum()


def _dist2(shape: tuple[int, ...], x: float, y: float) -> np.ndarray:
    """Squared distance of every pixel index of an [H, W] grid to (x, y); broadcast [H, W] float."""
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    return (xx - x) ** 2 + (yy - y) ** 2


def _argmax(score: np.ndarray, valid: np.ndarray) -> tuple[int, int]:
    s = np.where(valid, score, -np.inf)
    y, x = np.unravel_index(int(np.argmax(s)), s.shape)
    return int(x), int(y)


def _norm_luminance(wc: WorkCanvas) -> np.ndarray:
    """Luminance divided by its large-scale (0.15 FOV) background: ~1 on plain retina, >1 on the disc."""
    r, g, b = wc.rgb[..., 0], wc.rgb[..., 1], wc.rgb[..., 2]
    lum = 0.299 * r + 0.587 * g + 0.114 * b
    bg = masked_blur(lum, wc.fov, 0.15 * wc.transform.canvas_px)
    out = lum / np.maximum(bg, 1.0)
    out[~wc.fov] = 0.0
    return out


def disc_score_map(wc: WorkCanvas, lum_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (score float32 [S, S], valid bool [S, S]): brightness of a disc-sized region plus vessel cues."""
    dd, m = wc.dd_prior_px, wc.fov
    kern = _disk_kernel(dd / 2.0)
    inner = cv2.filter2D(lum_n, -1, kern, borderType=cv2.BORDER_CONSTANT)
    cover = cv2.filter2D(m.astype(np.float32), -1, kern, borderType=cv2.BORDER_CONSTANT)
    inner = inner / np.maximum(cover, 1e-3)
    valid = m & (cover > 0.6)
    v = wc.vessels
    gx = cv2.Sobel(v, cv2.CV_32F, 1, 0, ksize=5)
    gy = cv2.Sobel(v, cv2.CV_32F, 0, 1, ksize=5)
    inner_fov = cv2.erode(m.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)  # no FOV-rim gradients
    vertical = masked_blur(np.where(inner_fov, np.maximum(np.abs(gx) - np.abs(gy), 0.0), 0.0), m, 0.5 * dd)
    thick = cv2.morphologyEx(v, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    thick = masked_blur(thick, m, 0.5 * dd)
    wv, wt = DISC_VESSEL_WEIGHTS
    score = zscore(inner, valid) + wv * zscore(vertical, m) + wt * zscore(thick, m)
    return score, valid


def _ring_median(img: np.ndarray, mask: np.ndarray, x: float, y: float, r0: float, r1: float) -> float:
    d2 = _dist2(img.shape, x, y)
    sel = mask & (d2 >= r0 * r0) & (d2 < r1 * r1)
    return float(np.median(img[sel])) if sel.any() else float("nan")


def fit_disc_diameter(wc: WorkCanvas, lum_n: np.ndarray, x: int, y: int) -> float | None:
    """Disc diameter in canvas px at (x, y), or None when the fit is implausible.

    Vessels are removed by a grey closing (kernel DD/5); the threshold sits DD_FIT_LEVEL of the way from the surround to the 90th
    percentile within 0.3 DD and the median in the 1.0-1.6 DD ring; the answer is the equivalent-circle
    diameter of the thresholded component that contains (x, y), limited to a 1.6 DD window.
    """
    dd = wc.dd_prior_px
    k = max(3, int(round(dd / 5.0)) | 1)
    closed = cv2.morphologyEx(lum_n, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    closed = cv2.GaussianBlur(closed, (0, 0), dd / 20.0)
    d2 = _dist2(closed.shape, x, y)
    core = wc.fov & (d2 < (0.3 * dd) ** 2)
    if not core.any():
        return None
    hi = float(np.percentile(closed[core], 90))
    lo = _ring_median(closed, wc.fov, x, y, 1.0 * dd, 1.6 * dd)
    if not np.isfinite(lo) or hi <= lo:
        return None
    blob = (closed > lo + DD_FIT_LEVEL * (hi - lo)) & wc.fov & (d2 < (0.8 * dd) ** 2)
    n, labels = cv2.connectedComponents(blob.astype(np.uint8), connectivity=8)
    lab = labels[y, x]
    if lab == 0:
        return None
    diameter = float(np.sqrt(4.0 * np.count_nonzero(labels == lab) / np.pi))
    lo_r, hi_r = DD_FIT_RANGE
    return diameter if lo_r * dd <= diameter <= hi_r * dd else None


def combine_dd(fitted_px: float, prior_px: float, prior_log_weight: float = DD_PRIOR_LOG_WEIGHT) -> float:
    """Working disc diameter: fitted^(1 - w) x prior^w (both > 0, same units; w = ``prior_log_weight`` in [0, 1])."""
    if not (fitted_px > 0 and prior_px > 0) or not 0.0 <= prior_log_weight <= 1.0:
        raise ValueError(f"need positive diameters and a weight in [0, 1], got {fitted_px}, {prior_px}, "
                         f"{prior_log_weight}")
    return float(np.exp((1.0 - prior_log_weight) * np.log(fitted_px) + prior_log_weight * np.log(prior_px)))


def disc_contrast(wc: WorkCanvas, lum_n: np.ndarray, x: float, y: float, dd: float) -> float:
    """Mean normalised luminance within DD/2 of (x, y) / median in the 1.0-1.6 DD ring (1.0 = no disc)."""
    core = wc.fov & (_dist2(lum_n.shape, x, y) < (dd / 2.0) ** 2)
    ring = _ring_median(lum_n, wc.fov, x, y, dd, 1.6 * dd)
    if not core.any() or not np.isfinite(ring) or ring <= 0:
        return float("nan")
    return float(lum_n[core].mean() / ring)


def locate_fovea(wc: WorkCanvas, dx: float, dy: float, dd: float,
                 inverted: bool = False) -> tuple[float, float, float, str]:
    """Fovea candidate on the canvas given the disc (dx, dy) and DD (canvas px).

    -> (x, y, darkness, reason): canvas pixel indices of the best candidate (NaN when the search region is
    outside the FOV); darkness = its green / median green 1.0-1.5 DD around it (< 1 = darker); reason is ""
    for a dark candidate, else why there is no fovea. Plausibility and the fallback are the caller's
    (``fundus_geometry``). ``inverted`` flips the expected tilt of the anatomical prior.
    """
    c = wc.transform.canvas_px / 2.0 - 0.5                  # FOV centre (canvas pixel index)
    side = np.sign(c - dx) if abs(c - dx) > 0.5 * dd else 0.0
    down = -1.0 if inverted else 1.0
    m = wc.fov
    yy, xx = np.mgrid[:m.shape[0], :m.shape[1]]
    r = np.hypot(xx - dx, yy - dy)
    region = m & (r >= FOVEA_ANNULUS_DD[0] * dd) & (r <= FOVEA_ANNULUS_DD[1] * dd) \
        & (np.abs(yy - dy) <= FOVEA_MAX_DY_DD * dd)
    if side != 0:
        region &= np.sign(xx - dx) == side
    region &= np.hypot(xx - c, yy - c) <= FOVEA_MAX_FOV_RADIUS * WORK_FOV_DIAMETER_PX / 2.0
    if np.count_nonzero(region) < 20:
        return float("nan"), float("nan"), float("nan"), "fovea search region outside the FOV"
    raw = wc.rgb[..., 1]
    near = m & (r >= 1.5 * dd) & (r <= 3.8 * dd)
    cap = float(np.median(raw[near])) if near.any() else float(np.median(raw[m]))
    capped = np.minimum(raw, cap)                            # exudates capped: they must not hide the fovea
    green = masked_blur(capped, m, dd / 2.0)
    # band-pass: divide by a 2 DD background so vignetting and broad shading do not win
    dip = green / np.maximum(masked_blur(capped, m, 2.0 * dd), 1.0)
    ves = masked_blur(wc.vessels, m, dd / 2.0)
    # anatomical prior (§3.1): Gaussian log-likelihood of DFD/DD 2.65 +- 0.30, tilt -5.6 +- 3.3 deg (mirrored if inverted)
    tilt = down * tilt_deg((dx, dy), (xx, yy))
    log_prior = -0.5 * ((r / dd - DFD_PER_DD) / DFD_PER_DD_SD) ** 2 - 0.5 * ((tilt - TILT_MEAN_DEG) / TILT_SD_DEG) ** 2
    score = -zscore(dip, region) - 0.5 * zscore(ves, region) + FOVEA_PRIOR_WEIGHT * log_prior
    if wc.vessels_from_model:  # the macula is the vessel-free zone the arcades curve around
        score += FOVEA_VESSEL_FREE_WEIGHT * zscore(vessel_free_map(wc, dd), region, FOVEA_VESSEL_FREE_MIN_SD_DD)
    fx, fy = _argmax(score, region)
    rf = np.hypot(xx - fx, yy - fy)
    ring = m & (rf >= 1.0 * dd) & (rf <= 1.5 * dd)
    darkness = float(green[fy, fx] / max(float(np.median(green[ring])), 1e-6)) if ring.any() else float("nan")
    if not darkness <= FOVEA_MAX_DARKNESS:
        return float(fx), float(fy), darkness, f"no dark fovea (darkness {darkness:.3f} > {FOVEA_MAX_DARKNESS})"
    return float(fx), float(fy), darkness, ""


def vessel_free_map(wc: WorkCanvas, dd: float) -> np.ndarray:
    """Distance from each canvas pixel to the nearest vessel pixel (model probability >= VESSEL_MASK_LEVEL), in
    DD (pixels outside the FOV count as vessels: nothing is known there), capped at FOVEA_VESSEL_FREE_CAP_DD
    and smoothed at sigma DD/4 inside the FOV: float32 [H, W], high at the centre of the vessel-free macula."""
    free = ((wc.vessels < VESSEL_MASK_LEVEL) & wc.fov).astype(np.uint8)  # the FOV edge bounds it like a vessel
    dist = cv2.distanceTransform(free, cv2.DIST_L2, 5) / max(dd, 1e-6)
    return masked_blur(np.minimum(dist, FOVEA_VESSEL_FREE_CAP_DD).astype(np.float32), wc.fov, dd / 4.0)


def _no_disc(wc: WorkCanvas, reason: str, contrast: float) -> DiscFovea:
    nan = float("nan")
    return DiscFovea(nan, nan, wc.dd_prior_px / wc.transform.scale, False, nan, nan, nan, False,
                     IMAGE_CENTRED, "none", "none", reason, contrast, nan)


def locate_disc_fovea(rgb: np.ndarray, fov_mask: np.ndarray, vessel_prob: np.ndarray | None = None,
                      inverted: bool = False) -> DiscFovea:
    """RGB uint8 [H, W, 3], FOV bool [H, W], vessel probability float32 [H, W] or None -> DiscFovea.

    Without ``vessel_prob`` a black-hat vessel proxy is used (disc_method says which). ``inverted``: the
    image is known to be rotated 180 deg (flips the expected fovea tilt and the fallback estimate).
    """
    wc = make_work_canvas(rgb, fov_mask, vessel_prob)
    if np.count_nonzero(wc.fov) < 100:
        return _no_disc(wc, "FOV too small to search", float("nan"))
    lum_n = _norm_luminance(wc)
    score, valid = disc_score_map(wc, lum_n)
    if not valid.any():
        valid = wc.fov
    x, y = _argmax(score, valid)
    contrast = disc_contrast(wc, lum_n, x, y, wc.dd_prior_px)
    if not (contrast >= DISC_MIN_CONTRAST):
        return _no_disc(wc, f"no bright disc (contrast {contrast:.3f} < {DISC_MIN_CONTRAST})", contrast)
    fit = fit_disc_diameter(wc, lum_n, x, y)
    dd = combine_dd(fit, wc.dd_prior_px) if fit is not None else wc.dd_prior_px
    measured_dd = fit / wc.transform.scale if fit is not None else float("nan")
    fx, fy, darkness, reason = locate_fovea(wc, x, y, dd, inverted)
    disc_xy, dd_in = wc.to_input(x, y), dd / wc.transform.scale
    fovea_xy = None if reason else wc.to_input(fx, fy)
    faint = False
    if FOVEA_MAX_DARKNESS < darkness <= FOVEA_WEAK_DARKNESS:  # NaN (no search region) is never faint
        # a faint dip that agrees with the anatomy: better than the estimate, which ignores the image
        est = estimate_fovea_xy(disc_xy, dd_in, (wc.circle.cx, wc.circle.cy), inverted)
        cand = wc.to_input(fx, fy)
        if est is not None and np.hypot(cand[0] - est[0], cand[1] - est[1]) <= FOVEA_WEAK_MAX_SHIFT_DD * dd_in:
            fovea_xy, faint = cand, True
    if fovea_xy is not None:
        check = check_disc_fovea_pair(disc_xy, fovea_xy, dd_in, inverted)
        implausible = f"(DFD/DD {check.dfd_per_dd:.2f}, tilt {check.tilt_deg:.1f} deg)"
        if not check.plausible:
            fovea_xy, faint = None, False
            reason = f"{reason}; faint dip near the estimate implausible {implausible}" if faint \
                else f"implausible fovea {implausible}"
        elif faint:
            reason = ""
    axes = fundus_axes((wc.circle.cx, wc.circle.cy), wc.circle.diameter_px, disc_xy, fovea_xy, dd_in, inverted)
    fxi, fyi = axes.fovea_xy if axes.fovea_xy is not None else (float("nan"), float("nan"))
    if axes.fovea_xy is None:
        reason += "; no estimate: the disc is on the FOV's vertical centre line"
    fovea_method = {DISC_FOVEA: "faint_dip_near_estimate" if faint else "dark_green_annulus",
                    DISC_ONLY_ESTIMATED_FOVEA: "estimated_from_disc"}
    cues = "brightness+vessels" if wc.vessels_from_model else "brightness+vessel_proxy"
    return DiscFovea(disc_xy[0], disc_xy[1], dd_in, True, measured_dd, fxi, fyi,
                     axes.quadrant_method == DISC_FOVEA,
                     axes.quadrant_method, cues, fovea_method.get(axes.quadrant_method, "none"), reason, contrast,
                     darkness)
