"""Feature maps for the optic-disc / fovea locator, computed on a FOV-normalised working canvas.

Pure functions on arrays. The working canvas puts the FOV circle at the canvas centre with a fixed
diameter (``WORK_FOV_DIAMETER_PX``), so every length below is a fraction of the FOV diameter and the
expected disc diameter is ``DD_PER_FOV_DIAMETER * WORK_FOV_DIAMETER_PX`` canvas pixels (clinical-rules.md §3.1).
Inside the canvas the maps are indexed by pixel (x = column, y = row); ``WorkCanvas.to_input`` turns a canvas
pixel into continuous input coordinates (pixel centre = index + 0.5, as in ``preprocess.fov``).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from retinacli.postprocess.fundus_geometry import DD_PER_FOV_DIAMETER
from retinacli.preprocess.fov import FovCircle, fov_circle
from retinacli.preprocess.normalise import ScaleSpec, Transform, make_transform, to_canvas

WORK_FOV_DIAMETER_PX = 512           # FOV diameter on the working canvas
WORK_CANVAS_PX = 544                 # working canvas side (FOV + a small black margin)


@dataclass(frozen=True)
class WorkCanvas:
    """The image on the working canvas.

    rgb: float32 [S, S, 3] in 0..255 (0 outside the FOV); fov: bool [S, S] (eroded by 2% of the FOV
    diameter to drop the bright/dark rim); vessels: float32 [S, S] vessel probability 0..1 (model map when
    given, else a black-hat proxy); vessels_from_model: which of the two; transform: input -> canvas
    (pixel indices); circle: the FOV circle in continuous input pixels (its centre is the canvas centre,
    index ``canvas_px / 2 - 0.5``); dd_prior_px: expected DD in canvas pixels.
    """

    rgb: np.ndarray
    fov: np.ndarray
    vessels: np.ndarray
    vessels_from_model: bool
    transform: Transform
    circle: FovCircle
    dd_prior_px: float

    def to_input(self, x: float, y: float) -> tuple[float, float]:
        """Canvas pixel index (x, y) -> continuous input coordinates (x, y): index + 0.5 at pixel centres.

        ``transform`` acts on pixel indices (index_canvas = index_input * scale + t); the + 0.5 moves the
        input index to the pixel-centre convention of ``preprocess.fov`` and ``fundus_geometry``.
        """
        t = self.transform
        return (x - t.tx) / t.scale + 0.5, (y - t.ty) / t.scale + 0.5


def masked_blur(img: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian convolution: blur of ``img`` using only pixels where ``mask`` (bool [H, W]) is set.

    float32 [H, W] -> float32 [H, W]; 0 where no masked pixel is within reach.
    """
    m = mask.astype(np.float32)
    num = cv2.GaussianBlur(img.astype(np.float32) * m, (0, 0), sigma)
    den = cv2.GaussianBlur(m, (0, 0), sigma)
    out = np.zeros_like(num)
    ok = den > 1e-3
    out[ok] = num[ok] / den[ok]
    return out


def zscore(img: np.ndarray, mask: np.ndarray, min_sd: float = 1e-6) -> np.ndarray:
    """(img - mean) / max(std, ``min_sd``) over ``mask``; float32, 0 outside the mask. A ``min_sd`` in the image's
    own units keeps a nearly flat map from blowing its noise up to unit spread."""
    v = img[mask]
    if v.size == 0:
        return np.zeros_like(img, dtype=np.float32)
    out = (img - float(v.mean())) / max(float(v.std()), min_sd)
    out[~mask] = 0.0
    return out.astype(np.float32)


def vessel_proxy(green: np.ndarray, fov: np.ndarray, dd_px: float) -> np.ndarray:
    """Cheap vessel map when no model output is given: black-hat of the green channel, float32 0..1.

    Kernel = DD/5 (wider than the main vessels at the disc). The FOV median maps to 0 and the 99th percentile
    to 1 (at least 2 grey levels above the median, so a vessel-free image stays near 0).
    """
    k = max(3, int(round(dd_px / 5.0)) | 1)
    g = green.copy()
    g[~fov] = float(np.median(green[fov])) if fov.any() else 0.0
    bh = cv2.morphologyEx(g, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    bh[~fov] = 0.0
    if not fov.any():
        return bh.astype(np.float32)
    base, top = float(np.median(bh[fov])), float(np.percentile(bh[fov], 99))
    return np.clip((bh - base) / max(top - base, 2.0), 0.0, 1.0).astype(np.float32)


def make_work_canvas(rgb: np.ndarray, fov_mask: np.ndarray, vessel_prob: np.ndarray | None = None) -> WorkCanvas:
    """RGB uint8 [H, W, 3] + FOV bool [H, W] (+ vessel probability float32 [H, W]) -> WorkCanvas."""
    h, w = rgb.shape[:2]
    circle = fov_circle(fov_mask.astype(bool))
    t = make_transform(circle, h, w, ScaleSpec(WORK_CANVAS_PX, WORK_FOV_DIAMETER_PX))
    canvas = to_canvas(np.ascontiguousarray(rgb), t).astype(np.float32)
    fov = to_canvas(fov_mask.astype(np.uint8) * 255, t) > 127
    k = max(3, int(round(0.02 * WORK_FOV_DIAMETER_PX)) | 1)
    fov = cv2.erode(fov.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(bool)
    canvas[~fov] = 0.0
    dd = DD_PER_FOV_DIAMETER * WORK_FOV_DIAMETER_PX
    if vessel_prob is not None:
        ves = np.clip(to_canvas(np.asarray(vessel_prob, np.float32), t), 0.0, 1.0)
        ves[~fov] = 0.0
        from_model = True
    else:
        ves = vessel_proxy(canvas[..., 1], fov, dd)
        from_model = False
    return WorkCanvas(canvas, fov, ves, from_model, t, circle, dd)
