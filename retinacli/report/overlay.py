"""Overlays for reviewers: the photograph with findings drawn on it. Pure functions (arrays in, arrays out)."""
from __future__ import annotations

import cv2
import numpy as np

VESSEL_RGB = (0, 255, 0)


def vessel_overlay(rgb: np.ndarray, mask: np.ndarray, fov: np.ndarray | None = None, alpha: float = 0.6,
                   max_side_px: int = 0) -> np.ndarray:
    """RGB uint8 [H, W, 3] + bool vessel mask [H, W] -> RGB uint8 overlay (vessels tinted green, FOV outlined).

    ``max_side_px`` > 0 shrinks the result so its longer side is at most that (reviewers' copies stay small).
    """
    out = rgb.copy()
    m = mask.astype(bool)
    colour = np.array(VESSEL_RGB, dtype=np.float32)
    out[m] = np.round(out[m].astype(np.float32) * (1 - alpha) + colour * alpha).astype(np.uint8)
    if fov is not None:
        contours, _ = cv2.findContours(fov.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 0), max(1, max(rgb.shape[:2]) // 400))
    if max_side_px and max(out.shape[:2]) > max_side_px:
        s = max_side_px / max(out.shape[:2])
        out = cv2.resize(out, (round(out.shape[1] * s), round(out.shape[0] * s)), interpolation=cv2.INTER_AREA)
    return out
