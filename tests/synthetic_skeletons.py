"""Synthetic one-pixel skeletons shared by the vessel-graph and A/V-label tests (row, column indices)."""
from __future__ import annotations

import numpy as np


def draw(shape: tuple[int, int], pixels) -> np.ndarray:
    """bool [H, W] with the given (row, column) pixels set."""
    sk = np.zeros(shape, bool)
    for r, c in pixels:
        sk[r, c] = True
    return sk


def y_skeleton() -> np.ndarray:
    """Stem (10..20, 10) with two diagonal arms up to (2, 2) and (2, 18); branch pixel (10, 10).
    Segments in reading order: 1 left arm, 2 right arm, 3 stem."""
    return draw((21, 21), [(r, 10) for r in range(10, 21)]
                + [(10 - i, 10 - i) for i in range(1, 9)] + [(10 - i, 10 + i) for i in range(1, 9)])


def x_skeleton() -> np.ndarray:
    """Row 10 and column 10 of a 21 x 21 image: a plus-shaped crossing. Segments: 1 top, 2 left, 3 right,
    4 bottom arm."""
    sk = np.zeros((21, 21), bool)
    sk[10, :] = True
    sk[:, 10] = True
    return sk
