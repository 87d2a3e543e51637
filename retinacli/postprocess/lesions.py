"""Lesion masks -> connected components with size, position and shape. Pure functions.

Coordinates follow the repo's continuous convention (see ``preprocess.fov.FovCircle``): x right, y down,
pixel column i covers [i, i+1), so the pixel with index (row r, column c) has its centre at (c + 0.5, r + 0.5).
Centroids and distances use pixel centres; bounding boxes and ``pixels_xy`` are integer pixel indices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

PIXEL_CENTRE_OFFSET = 0.5  # continuous coordinate of a pixel centre = integer index + 0.5


@dataclass(frozen=True)
class Lesion:
    """One 8-connected component of a lesion mask.

    label: the component's id in the ``cv2.connectedComponentsWithStats`` label map (1..n-1; ids of dropped
        small components are skipped, so ids need not be contiguous).
    area_px: pixel count.
    equivalent_diameter_px: diameter of the circle of the same area, sqrt(4 * area / pi), in px.
    centroid_xy: mean of the pixel centres (x, y), continuous input pixels.
    bbox_xywh: (x0, y0, width, height) in integer pixel indices (cv2 convention).
    eccentricity: of the ellipse with the same second moments (0 = circle or a single pixel, -> 1 = line).
    pixels_xy: int32 [N, 2] (column, row) indices of the component's pixels, read-only; excluded from ==.
    """

    label: int
    area_px: int
    equivalent_diameter_px: float
    centroid_xy: tuple[float, float]
    bbox_xywh: tuple[int, int, int, int]
    eccentricity: float
    pixels_xy: np.ndarray = field(compare=False, repr=False)

    def pixel_centres_xy(self) -> np.ndarray:
        """float64 [N, 2] pixel centres (x, y) in continuous input pixels."""
        return self.pixels_xy.astype(np.float64) + PIXEL_CENTRE_OFFSET


def equivalent_diameter_px(area_px: float) -> float:
    """Diameter (px) of the circle whose area is ``area_px`` (px^2): sqrt(4 * area / pi)."""
    return math.sqrt(4.0 * float(area_px) / math.pi)


def _eccentricity(pixels_xy: np.ndarray) -> float:
    """Eccentricity of the second-moment ellipse of a pixel set (0 for fewer than 2 pixels)."""
    if len(pixels_xy) < 2:
        return 0.0
    cov = np.cov(pixels_xy.astype(np.float64).T, bias=True)
    lo, hi = np.linalg.eigvalsh(cov)  # ascending
    if hi <= 0:
        return 0.0
    return float(math.sqrt(max(0.0, 1.0 - max(lo, 0.0) / hi)))


def lesion_from_pixels(label: int, pixels_xy: np.ndarray) -> Lesion:
    """Build a Lesion from int [N, 2] (column, row) pixel indices (N >= 1), e.g. for synthetic findings."""
    pix = np.asarray(pixels_xy, dtype=np.int32).reshape(-1, 2).copy()
    if len(pix) == 0:
        raise ValueError("a lesion needs at least one pixel")
    pix.setflags(write=False)
    x0, y0 = (int(v) for v in pix.min(axis=0))
    x1, y1 = (int(v) for v in pix.max(axis=0))
    cx, cy = (float(v) + PIXEL_CENTRE_OFFSET for v in pix.astype(np.float64).mean(axis=0))
    return Lesion(label=int(label), area_px=len(pix), equivalent_diameter_px=equivalent_diameter_px(len(pix)),
                  centroid_xy=(cx, cy), bbox_xywh=(x0, y0, x1 - x0 + 1, y1 - y0 + 1),
                  eccentricity=_eccentricity(pix), pixels_xy=pix)


def lesion_components(mask: np.ndarray, min_area_px: int = 1) -> list[Lesion]:
    """bool [H, W] lesion mask -> its 8-connected components with area >= ``min_area_px`` (px), by label id.

    Uses ``cv2.connectedComponentsWithStats(connectivity=8)``; components below ``min_area_px`` are dropped.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"lesion mask must be 2-D [H, W], got shape {m.shape}")
    if min_area_px < 1:
        raise ValueError(f"min_area_px must be >= 1, got {min_area_px}")
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(m.astype(bool).astype(np.uint8),
                                                                   connectivity=8)
    if n <= 1:
        return []
    flat = labels.ravel()
    idx = np.flatnonzero(flat)
    order = np.argsort(flat[idx], kind="stable")
    idx = idx[order]
    rows, cols = np.divmod(idx, m.shape[1])
    pixels = np.stack([cols, rows], axis=1).astype(np.int32)
    areas = stats[1:, cv2.CC_STAT_AREA]
    starts = np.concatenate([[0], np.cumsum(areas)])
    out: list[Lesion] = []
    for k in range(1, n):
        area = int(stats[k, cv2.CC_STAT_AREA])
        if area < min_area_px:
            continue
        pix = pixels[starts[k - 1]:starts[k]].copy()
        pix.setflags(write=False)
        x, y, w, h = (int(stats[k, c]) for c in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP,
                                                 cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
        cx, cy = (float(v) + PIXEL_CENTRE_OFFSET for v in centroids[k])
        out.append(Lesion(label=k, area_px=area, equivalent_diameter_px=equivalent_diameter_px(area),
                          centroid_xy=(cx, cy), bbox_xywh=(x, y, w, h),
                          eccentricity=_eccentricity(pix), pixels_xy=pix))
    return out


def min_distance_to_point_px(target: Lesion | np.ndarray, point_xy: tuple[float, float]) -> float:
    """Smallest Euclidean distance (px) from ``point_xy`` (continuous x, y) to any pixel centre of ``target``.

    ``target`` is a Lesion (its pixels) or a bool [H, W] mask (all True pixels); ``inf`` when it has no pixels.
    """
    if isinstance(target, Lesion):
        pts = target.pixel_centres_xy()
    else:
        m = np.asarray(target)
        if m.ndim != 2:
            raise ValueError(f"mask must be 2-D [H, W], got shape {m.shape}")
        rows, cols = np.nonzero(m)
        pts = np.stack([cols, rows], axis=1).astype(np.float64) + PIXEL_CENTRE_OFFSET
    if len(pts) == 0:
        return math.inf
    d2 = (pts[:, 0] - float(point_xy[0])) ** 2 + (pts[:, 1] - float(point_xy[1])) ** 2
    return float(math.sqrt(float(d2.min())))
