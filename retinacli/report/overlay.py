"""Overlays for reviewers: the photograph with findings drawn on it. Pure functions (arrays in, arrays out)."""
from __future__ import annotations

import cv2
import numpy as np

from retinacli.preprocess.fov import FovCircle

VESSEL_RGB = (0, 255, 0)
FOV_RGB = (255, 255, 0)


def vessel_overlay(rgb: np.ndarray, mask: np.ndarray, circle: FovCircle | None = None, alpha: float = 0.6) -> np.ndarray:
    """RGB uint8 [H, W, 3] + bool vessel mask [H, W] -> RGB uint8 overlay [H, W, 3].

    Vessel pixels become (1 - alpha) * photo + alpha * green; the FOV circle, when given, is outlined.
    Uses OpenCV masked copies (an 8-Mpx HRF image takes tens of milliseconds).
    """
    tinted = cv2.convertScaleAbs(rgb, alpha=1.0 - alpha)
    tinted = cv2.add(tinted, tuple(float(c * alpha) for c in VESSEL_RGB) + (0.0,))
    out = rgb.copy()
    cv2.copyTo(tinted, mask.astype(np.uint8), out)
    if circle is not None:
        thickness = max(1, max(rgb.shape[:2]) // 400)
        cv2.circle(out, (int(round(circle.cx - 0.5)), int(round(circle.cy - 0.5))), int(round(circle.r)), FOV_RGB, thickness,
                   lineType=cv2.LINE_AA)
    return out


HEMORRHAGE_RGB = (0, 255, 255)
DISC_RGB = (255, 255, 255)
FOVEA_RGB = (255, 0, 255)


def hemorrhage_overlay(rgb: np.ndarray, mask: np.ndarray, disc_xy: tuple[float, float] | None = None,
                       disc_diameter_px: float | None = None, fovea_xy: tuple[float, float] | None = None,
                       fovea_estimated: bool = False) -> np.ndarray:
    """RGB uint8 [H, W, 3] + bool haemorrhage mask [H, W] -> RGB uint8 overlay [H, W, 3].

    Haemorrhage components are outlined in cyan (small ones stay visible); the disc is a white circle of its
    diameter (px); the fovea a magenta cross (dashed-looking thin cross when only estimated from the disc).
    Coordinates are continuous input pixels (pixel centre = index + 0.5).
    """
    out = rgb.copy()
    t = max(1, max(rgb.shape[:2]) // 600)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, HEMORRHAGE_RGB, t, lineType=cv2.LINE_AA)
    if disc_xy is not None and disc_diameter_px:
        centre = (int(round(disc_xy[0] - 0.5)), int(round(disc_xy[1] - 0.5)))
        cv2.circle(out, centre, int(round(disc_diameter_px / 2)), DISC_RGB, t, lineType=cv2.LINE_AA)
    if fovea_xy is not None:
        centre = (int(round(fovea_xy[0] - 0.5)), int(round(fovea_xy[1] - 0.5)))
        size = max(6, max(rgb.shape[:2]) // 60)
        cv2.drawMarker(out, centre, FOVEA_RGB, cv2.MARKER_CROSS if not fovea_estimated else cv2.MARKER_TILTED_CROSS,
                       size, t, cv2.LINE_AA)
    return out


def av_overlay(rgb: np.ndarray, label_map: np.ndarray, alpha: float = 0.7) -> np.ndarray:
    """RGB uint8 [H, W, 3] + uint8 A/V label map [H, W] (1 artery, 2 vein) -> overlay: arteries tinted red,
    veins blue."""
    out = rgb.copy()
    for lab, colour in ((1, (255, 0, 0)), (2, (0, 0, 255))):
        tinted = cv2.add(cv2.convertScaleAbs(rgb, alpha=1.0 - alpha), tuple(float(c * alpha) for c in colour) + (0.0,))
        cv2.copyTo(tinted, (label_map == lab).astype(np.uint8), out)
    return out
