"""Test-time flips: a Backend that averages a model's probabilities over mirrored copies of each canvas.

A model trained with flip (and rotation) augmentation sees a mirrored fundus as just another fundus, so the
mean of its outputs on the canvas and on mirrored canvases (each mapped back) is a slightly better estimate
than one pass. Which flips a model uses is part of its artefact (``metadata.json`` ``test_time_flips``,
written by ``retina export-onnx --test-time-flips``), so every caller of ``create_backend`` (process,
evaluate) runs the model the same way. Cost: one extra inference per flip.

Flip names: ``horizontal`` (left-right, axis W), ``vertical`` (up-down, axis H), ``both`` (180 deg rotation).
Arrays are [N, C, H, W]; flipping is its own inverse.
"""
from __future__ import annotations

import numpy as np

from retinacli.runtime.base import Backend

FLIP_AXES: dict[str, tuple[int, ...]] = {"horizontal": (3,), "vertical": (2,), "both": (2, 3)}


def check_flips(flips) -> tuple[str, ...]:
    """Validate a list of flip names -> tuple (duplicates dropped; None or an empty list = no flip). Raises
    ValueError for anything but a list/tuple of known names (a bare string is refused, not split into letters)."""
    if flips is None:
        return ()
    if not isinstance(flips, (list, tuple)) or not all(isinstance(f, str) for f in flips):
        raise ValueError(f"test-time flips must be a list of names ({', '.join(FLIP_AXES)}), got {flips!r}")
    flips = tuple(flips)
    unknown = [f for f in flips if f not in FLIP_AXES]
    if unknown:
        raise ValueError(f"unknown test-time flip(s) {unknown}; choose from {', '.join(FLIP_AXES)}")
    return tuple(dict.fromkeys(flips))


def flips_label(flips) -> str:
    """Flips as written in reports and resume keys: "horizontal+vertical", or "none"."""
    return "+".join(check_flips(flips)) or "none"


def flip_nchw(batch: np.ndarray, flip: str) -> np.ndarray:
    """[N, C, H, W] -> the same batch mirrored as ``flip`` says (a contiguous copy)."""
    return np.ascontiguousarray(np.flip(batch, axis=FLIP_AXES[flip]))


class FlipAveragedBackend:
    """Wraps a Backend: ``run`` = mean of ``inner.run`` on the batch and on each flipped copy, flipped back."""

    def __init__(self, inner: Backend, flips):
        self.inner = inner
        self.flips = check_flips(flips)
        self.name = inner.name
        self.canvas_sides = inner.canvas_sides
        self.max_batch = inner.max_batch

    def run(self, batch: np.ndarray) -> np.ndarray:
        total = np.asarray(self.inner.run(batch), dtype=np.float32).copy()
        for f in self.flips:
            total += flip_nchw(self.inner.run(flip_nchw(batch, f)), f)
        return total / np.float32(1 + len(self.flips))

    def close(self) -> None:
        self.inner.close()
