"""Lesion-level detection counts for one image (pure): which ground-truth components the prediction hits,
and how many predicted components touch no ground truth.

A ground-truth component counts as detected when at least one of its pixels is predicted (8-connected
components, as ``postprocess.lesions``). A predicted component is a false positive when none of its pixels
is ground truth. ``min_gt_area_px`` selects the "large" ground-truth components reported separately
(issue acceptance: components larger than 100 px at full resolution). The ground-truth components are also
counted per size band (``SIZE_BAND_EDGES_PX``), so recall can be read by lesion size.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


# Size bands of ground-truth components, in pixels at the image's own resolution: band k holds areas in
# (edges[k], edges[k + 1]], the last band everything above edges[-1]. Components of <= edges[0] px are in none.
SIZE_BAND_EDGES_PX = (100, 300, 1000, 3000)
N_BANDS = len(SIZE_BAND_EDGES_PX)


def size_band_names(edges: tuple[int, ...] = SIZE_BAND_EDGES_PX) -> list[str]:
    """Column-friendly band names, e.g. ['100-300px', '300-1000px', '1000-3000px', '>3000px']."""
    return [f"{a}-{b}px" for a, b in zip(edges[:-1], edges[1:])] + [f">{edges[-1]}px"]


def size_band_of(area_px: np.ndarray, edges: tuple[int, ...] = SIZE_BAND_EDGES_PX) -> np.ndarray:
    """Component areas int [K] -> band index int [K] (-1 for areas <= edges[0])."""
    return np.searchsorted(np.asarray(edges), np.asarray(area_px), side="left") - 1


@dataclass(frozen=True)
class LesionDetection:
    """Counts for one image (or summed over images with ``+``). ``gt_by_size`` / ``detected_by_size``: ground-truth
    components and the detected ones per SIZE_BAND_EDGES_PX band."""

    gt_components: int = 0
    gt_detected: int = 0
    gt_large_components: int = 0
    gt_large_detected: int = 0
    pred_components: int = 0
    fp_components: int = 0
    gt_by_size: tuple[int, ...] = (0,) * N_BANDS
    detected_by_size: tuple[int, ...] = (0,) * N_BANDS

    def __add__(self, other: "LesionDetection") -> "LesionDetection":
        add = lambda a, b: tuple(x + y for x, y in zip(a, b)) if isinstance(a, tuple) else a + b
        return LesionDetection(*(add(a, b) for a, b in zip(asdict(self).values(), asdict(other).values())))

    def recall_by_size(self) -> dict[str, float]:
        """{band name: detected / ground-truth components in that band (NaN when the band is empty)}."""
        return {name: d / g if g else float("nan")
                for name, g, d in zip(size_band_names(), self.gt_by_size, self.detected_by_size)}

    def as_dict(self) -> dict[str, int]:
        """Flat counts (one column per size band), e.g. for a CSV row."""
        d = {k: v for k, v in asdict(self).items() if not isinstance(v, tuple)}
        for name, g, hit in zip(size_band_names(), self.gt_by_size, self.detected_by_size):
            d[f"gt_components_{name}"] = g
            d[f"gt_detected_{name}"] = hit
        return d


def _components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return n, labels, stats[:, cv2.CC_STAT_AREA]


def lesion_detection(pred: np.ndarray, label: np.ndarray, mask: np.ndarray | None = None,
                     min_gt_area_px: int = SIZE_BAND_EDGES_PX[0], min_pred_area_px: int = 1) -> LesionDetection:
    """pred, label bool [H, W] (and an optional region bool [H, W] outside which both are ignored) -> counts.

    Ground-truth components with area > ``min_gt_area_px`` are "large"; predicted components smaller than
    ``min_pred_area_px`` are ignored (as the product ignores speckle below its minimum finding area).
    """
    pred, label = np.asarray(pred, bool), np.asarray(label, bool)
    if pred.shape != label.shape:
        raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in shape")
    if mask is not None:
        pred, label = pred & mask, label & mask
    n_p, lab_p, area_p = _components(pred)
    keep_p = np.zeros(n_p, bool)
    keep_p[1:] = area_p[1:] >= min_pred_area_px
    pred = keep_p[lab_p]
    n_g, lab_g, area_g = _components(label)
    hit = np.zeros(n_g, bool)
    hit[np.unique(lab_g[pred])] = True
    gt_ids = np.arange(1, n_g)
    large = area_g[gt_ids] > min_gt_area_px
    band = size_band_of(area_g[gt_ids])
    touched = np.zeros(n_p, bool)
    touched[np.unique(lab_p[label & pred])] = True
    pred_ids = np.flatnonzero(keep_p)
    gt_hit = hit[gt_ids]
    return LesionDetection(gt_components=len(gt_ids), gt_detected=int(gt_hit.sum()),
                           gt_large_components=int(large.sum()), gt_large_detected=int(gt_hit[large].sum()),
                           pred_components=len(pred_ids), fp_components=int((~touched[pred_ids]).sum()),
                           gt_by_size=tuple(int(np.count_nonzero(band == k)) for k in range(N_BANDS)),
                           detected_by_size=tuple(int(np.count_nonzero(gt_hit[band == k])) for k in range(N_BANDS)))
