"""Lesion-level detection counts for one image (pure): which ground-truth components the prediction hits,
and how many predicted components touch no ground truth.

A ground-truth component counts as detected when at least one of its pixels is predicted (8-connected
components, as ``postprocess.lesions``). A predicted component is a false positive when none of its pixels
is ground truth. ``min_gt_area_px`` selects the "large" ground-truth components reported separately
(issue acceptance: components larger than 100 px at full resolution).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class LesionDetection:
    """Counts for one image (or summed over images with ``+``)."""

    gt_components: int = 0
    gt_detected: int = 0
    gt_large_components: int = 0
    gt_large_detected: int = 0
    pred_components: int = 0
    fp_components: int = 0

    def __add__(self, other: "LesionDetection") -> "LesionDetection":
        return LesionDetection(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return n, labels, stats[:, cv2.CC_STAT_AREA]


def lesion_detection(pred: np.ndarray, label: np.ndarray, mask: np.ndarray | None = None,
                     min_gt_area_px: int = 100, min_pred_area_px: int = 1) -> LesionDetection:
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
    touched = np.zeros(n_p, bool)
    touched[np.unique(lab_p[label & pred])] = True
    pred_ids = np.flatnonzero(keep_p)
    return LesionDetection(gt_components=len(gt_ids), gt_detected=int(hit[gt_ids].sum()),
                           gt_large_components=int(large.sum()), gt_large_detected=int(hit[gt_ids][large].sum()),
                           pred_components=len(pred_ids), fp_components=int((~touched[pred_ids]).sum()))
