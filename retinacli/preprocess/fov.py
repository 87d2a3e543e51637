"""Field-of-view (FOV) estimation: the bright disc of retina inside the black camera border.

All functions are pure: arrays in, arrays/dataclasses out.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WORK_SIDE_PX = 512  # the FOV is estimated on a copy whose longer side is this many pixels


@dataclass(frozen=True)
class FovCircle:
    """FOV circle in continuous input pixel coordinates (pixel column i covers [i, i+1), so the image spans
    [0, W) x [0, H)): centre (cx, cy), radius r in pixels. May extend past the image."""

    cx: float
    cy: float
    r: float
    fitted: bool  # True: circle fitted to the FOV boundary; False: fallback from the mask's bounding box

    @property
    def diameter_px(self) -> float:
        return 2.0 * self.r


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask, dtype=bool)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == best


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = mask.astype(np.uint8)
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return mask | holes


def fov_threshold(value: np.ndarray) -> float:
    """Brightness threshold separating retina from border on a max-of-RGB image (uint8 scale).

    Background level = 2nd percentile, retina level = 90th percentile; the threshold sits at 12% of the
    way between them (at least 4 grey levels above the background), so dark or under-exposed retinas
    still count as FOV while JPEG noise in the black border does not.
    """
    lo = float(np.percentile(value, 2))
    hi = float(np.percentile(value, 90))
    return max(lo + 4.0, lo + 0.12 * (hi - lo))


def estimate_fov_mask(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> boolean FOV mask [H, W].

    Threshold of the (median-smoothed) max-of-RGB image, largest connected component, holes filled,
    opened with a disc to cut off burned-in text touching the border. Computed at WORK_SIDE_PX and
    resized back with nearest neighbour.
    """
    return estimate_fov(rgb)[0]


def estimate_fov(rgb: np.ndarray) -> tuple[np.ndarray, FovCircle]:
    """RGB uint8 [H, W, 3] -> (boolean FOV mask [H, W], FOV circle in input pixels).

    The circle is fitted on the working-resolution mask and scaled to input pixels (cheap for 8+ Mpx images).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"estimate_fov needs an RGB image [H, W, 3], got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    scale = min(1.0, WORK_SIDE_PX / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA) \
        if scale < 1.0 else rgb
    value = cv2.medianBlur(cv2.max(cv2.max(small[..., 0], small[..., 1]), small[..., 2]), 5)  # max of RGB
    mask = value > fov_threshold(value)
    k = max(3, int(round(min(mask.shape) * 0.02)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    mask = _largest_component(mask)
    mask = _fill_holes(mask)
    if not mask.any():
        mask = np.ones_like(mask, dtype=bool)
    small_circle = fov_circle(mask)
    if scale < 1.0:
        sx, sy = w / mask.shape[1], h / mask.shape[0]
        circle = FovCircle(small_circle.cx * sx, small_circle.cy * sy, small_circle.r * (sx + sy) / 2.0,
                           small_circle.fitted)
        mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    else:
        circle = small_circle
    return mask, circle


def fit_circle(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float]:
    """Least-squares (Kasa) circle through points -> (cx, cy, r). Needs >= 3 non-collinear points."""
    a = np.stack([xs, ys, np.ones_like(xs)], axis=1).astype(np.float64)
    b = (xs.astype(np.float64) ** 2 + ys.astype(np.float64) ** 2)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    cx, cy = sol[0] / 2.0, sol[1] / 2.0
    r = float(np.sqrt(max(sol[2] + cx * cx + cy * cy, 0.0)))
    return float(cx), float(cy), r


def fov_circle(mask: np.ndarray) -> FovCircle:
    """Boolean FOV mask [H, W] -> the circle that bounds it.

    The circle is fitted to the FOV boundary pixels that do not lie on the image border, so FOVs clipped
    at the top/bottom (HRF, IDRiD) still get their true diameter. Falls back to the bounding box when the
    fit is implausible (fewer than 20 free boundary points, or a radius outside the mask's own extent).
    """
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return FovCircle(w / 2.0, h / 2.0, max(h, w) / 2.0, False)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    bbox = FovCircle((x0 + x1) / 2.0, (y0 + y1) / 2.0, max(x1 - x0, y1 - y0) / 2.0, False)
    m8 = mask.astype(np.uint8)
    eroded = cv2.erode(m8, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    boundary = (m8 - eroded).astype(bool)
    margin = 2
    boundary[:margin, :] = boundary[-margin:, :] = False
    boundary[:, :margin] = boundary[:, -margin:] = False
    by, bx = np.nonzero(boundary)
    if bx.size < 20:
        return bbox
    step = max(1, bx.size // 4000)
    cx, cy, r = fit_circle(bx[::step], by[::step])
    extent = max(x1 - x0, y1 - y0) / 2.0
    if not (0.9 * extent <= r <= 1.6 * extent) or not (x0 <= cx <= x1 and y0 <= cy <= y1):
        return bbox
    # the fit runs through boundary pixel centres (index coordinates, half a pixel inside the edge)
    return FovCircle(cx + 0.5, cy + 0.5, r + 0.5, True)
