"""Vessel probability maps -> masks and summary numbers. Pure functions."""
from __future__ import annotations

import numpy as np


def probs_to_mask(prob: np.ndarray, threshold: float, fov: np.ndarray | None = None) -> np.ndarray:
    """float [H, W] probabilities -> bool mask (prob >= threshold), False outside ``fov``."""
    mask = np.asarray(prob) >= threshold
    if fov is not None:
        mask &= fov.astype(bool)
    return mask


def vessel_density(mask: np.ndarray, fov: np.ndarray) -> float:
    """Share of FOV pixels that are vessel (0..1); NaN for an empty FOV."""
    n = int(np.count_nonzero(fov))
    return float(np.count_nonzero(mask & fov.astype(bool)) / n) if n else float("nan")


def prob_to_uint8(prob: np.ndarray) -> np.ndarray:
    """float [H, W] in [0, 1] -> uint8 (0..255, rounded), for 8-bit probability PNGs."""
    return np.clip(np.round(np.asarray(prob, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
