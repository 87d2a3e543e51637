"""Scale normalisation by FOV diameter: a similarity transform (scale + shift) and its exact inverse.

The model sees a square canvas of ``canvas_px`` pixels in which the FOV circle has diameter
``fov_diameter_px``; everything outside the FOV is black. Outputs are mapped back to the input's own
pixel grid with the inverse transform.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from retinacli.preprocess.fov import FovCircle, estimate_fov, fov_circle


@dataclass(frozen=True)
class ScaleSpec:
    """Model-space geometry: canvas side and FOV diameter, in model pixels.

    ``min_fov_diameter_px`` (optional) makes the scale follow the image: the FOV is drawn at its own diameter
    in input pixels, clipped to [min_fov_diameter_px, fov_diameter_px], so a small photograph is not blown up
    beyond what it holds and a large one is shrunk to ``fov_diameter_px``. None: always ``fov_diameter_px``.

    ``canvas_options_px``: smaller canvas sides the model artefact also ships graphs for (`retina export-onnx
    --extra-canvas-px`). An image whose FOV is drawn small enough gets the smallest of them that keeps the main
    canvas's black margin around its FOV (``canvas_side``), e.g. DRIVE's 896-px FOV on a 928-px canvas instead of
    1056: 23% fewer pixels to run. Empty: every image on ``canvas_px``. Every side is a fixed input shape.
    """

    canvas_px: int = 672
    fov_diameter_px: int = 640
    min_fov_diameter_px: int | None = None
    canvas_options_px: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.canvas_px < self.fov_diameter_px:
            raise ValueError(f"canvas_px {self.canvas_px} is smaller than fov_diameter_px {self.fov_diameter_px}: "
                             "the FOV would be cut off")
        lo = self.min_fov_diameter_px
        if lo is not None and not 0 < lo <= self.fov_diameter_px:
            raise ValueError(f"min_fov_diameter_px {lo} must be in (0, fov_diameter_px={self.fov_diameter_px}]")
        margin = self.margin_px
        for side in self.canvas_options_px:
            if not margin < side < self.canvas_px:
                raise ValueError(f"canvas option {side} px must be smaller than canvas_px {self.canvas_px} and "
                                 f"larger than its FOV margin ({margin} px)")
            smallest = self.fov_diameter_px if lo is None else lo
            if side - margin < smallest:
                raise ValueError(f"canvas option {side} px would never be used: it has room for a {side - margin} px "
                                 f"FOV, and this model never draws a FOV below {smallest} px")
        if tuple(sorted(set(self.canvas_options_px))) != tuple(self.canvas_options_px):
            raise ValueError(f"canvas_options_px {self.canvas_options_px} must be sorted and without repeats")

    @property
    def canvas_sides(self) -> tuple[int, ...]:
        """Every canvas side an image may be prepared on, ascending."""
        return (*self.canvas_options_px, self.canvas_px)

    @property
    def margin_px(self) -> int:
        """Black margin the main canvas leaves around the largest FOV (both sides together), model px."""
        return self.canvas_px - self.fov_diameter_px

    def model_fov_diameter_px(self, input_fov_diameter_px: float) -> float:
        """FOV diameter on the canvas (model px) for an input whose FOV circle is this wide (input px)."""
        if self.min_fov_diameter_px is None:
            return float(self.fov_diameter_px)
        return float(min(max(input_fov_diameter_px, self.min_fov_diameter_px), self.fov_diameter_px))

    def canvas_side(self, model_fov_diameter_px: float) -> int:
        """Canvas side (model px) for a FOV drawn this wide on it: the smallest of ``canvas_options_px`` that leaves
        at least ``margin_px`` around it, else ``canvas_px``."""
        for side in self.canvas_options_px:
            if side - self.margin_px >= model_fov_diameter_px - 1e-6:
                return side
        return self.canvas_px

    def at_side(self, side: int) -> "ScaleSpec":
        """The single-canvas spec of one of this spec's sides (FOV range clipped to what fits it)."""
        if side == self.canvas_px:
            return ScaleSpec(self.canvas_px, self.fov_diameter_px, self.min_fov_diameter_px)
        if side not in self.canvas_options_px:
            raise ValueError(f"{side} px is not one of this model's canvas sides")
        return ScaleSpec(side, side - self.margin_px, self.min_fov_diameter_px)


def scale_spec_of(preprocess: dict, canvas_options_px: Iterable[int] = ()) -> ScaleSpec:
    """The ScaleSpec recorded in a checkpoint's or metadata's ``preprocess`` block (plus the smaller canvas sides
    an artefact ships graphs for)."""
    lo = preprocess.get("min_fov_diameter_px")
    return ScaleSpec(int(preprocess["canvas_px"]), int(preprocess["fov_diameter_px"]), None if lo is None else int(lo),
                     tuple(sorted(int(s) for s in canvas_options_px)))


@dataclass(frozen=True)
class Transform:
    """Input pixel (x, y) -> model pixel (x * scale + tx, y * scale + ty). Input size kept for the inverse."""

    scale: float
    tx: float
    ty: float
    input_h: int
    input_w: int
    canvas_px: int

    def matrix(self) -> np.ndarray:
        return np.array([[self.scale, 0.0, self.tx], [0.0, self.scale, self.ty]], dtype=np.float64)

    def inverse_matrix(self) -> np.ndarray:
        s = 1.0 / self.scale
        return np.array([[s, 0.0, -self.tx * s], [0.0, s, -self.ty * s]], dtype=np.float64)


@dataclass
class Prepared:
    """One image ready for the model: canvas uint8 [S, S, 3] (outside FOV = 0; S = ``transform.canvas_px``, one of
    the spec's canvas sides), FOV on canvas, the transform."""

    canvas: np.ndarray
    canvas_fov: np.ndarray
    fov_mask: np.ndarray  # input resolution, bool [H, W]
    circle: FovCircle
    transform: Transform


def make_transform(circle: FovCircle, h: int, w: int, spec: ScaleSpec) -> Transform:
    """Transform putting the FOV circle's centre at the centre of a ``spec.canvas_side(d)`` canvas with diameter
    d = ``spec.model_fov_diameter_px(circle.diameter_px)``."""
    d = spec.model_fov_diameter_px(circle.diameter_px)
    scale = d / max(circle.diameter_px, 1.0)
    side = spec.canvas_side(d)
    centre = side / 2.0
    # continuous coords: u_out = u_in * scale + (centre - cx * scale); the matrix acts on pixel indices (u - 0.5)
    tx = centre - (circle.cx) * scale - 0.5 + 0.5 * scale
    ty = centre - (circle.cy) * scale - 0.5 + 0.5 * scale
    return Transform(scale, tx, ty, h, w, side)


def to_canvas(image: np.ndarray, t: Transform, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Warp an input-resolution array [H, W(, C)] onto the model canvas [S, S(, C)], zeros outside.

    Down-scaling uses area interpolation for images (anti-aliasing).
    """
    if interpolation == cv2.INTER_LINEAR and t.scale < 1.0:
        # cv2.warpAffine has no area mode: pre-shrink with an area resize, then warp the remainder
        h, w = image.shape[:2]
        nw, nh = max(1, round(w * t.scale)), max(1, round(h * t.scale))
        small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        sx, sy = nw / w, nh / h
        # canvas = T(input) and small = R(input), so canvas = T(R^-1(small)) (pixel-centre convention)
        m = t.matrix() @ np.array([[1 / sx, 0, 0.5 / sx - 0.5], [0, 1 / sy, 0.5 / sy - 0.5], [0, 0, 1]])
        return cv2.warpAffine(small, m, (t.canvas_px, t.canvas_px), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.warpAffine(image, t.matrix(), (t.canvas_px, t.canvas_px), flags=interpolation,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def from_canvas(canvas_array: np.ndarray, t: Transform, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Map a canvas array [S, S] (e.g. probabilities, float32) back to the input grid [H, W]."""
    return cv2.warpAffine(canvas_array, t.inverse_matrix(), (t.input_w, t.input_h), flags=interpolation,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def prepare(rgb: np.ndarray, spec: ScaleSpec, fov_mask: np.ndarray | None = None,
            circle: FovCircle | None = None) -> Prepared:
    """RGB uint8 [H, W, 3] -> Prepared canvas. ``fov_mask`` (bool [H, W]) overrides the estimate; with it,
    ``circle`` (its fitted circle, e.g. from an earlier ``prepare`` of the same image) skips the refit."""
    h, w = rgb.shape[:2]
    if fov_mask is None:
        mask, circle = estimate_fov(rgb)
    else:
        mask = fov_mask.astype(bool)
        circle = fov_circle(mask) if circle is None else circle
    t = make_transform(circle, h, w, spec)
    canvas = to_canvas(rgb, t)
    canvas_fov_u8 = cv2.threshold(to_canvas(mask.astype(np.uint8) * 255, t), 127, 255, cv2.THRESH_BINARY)[1]
    canvas = cv2.bitwise_and(canvas, canvas, mask=canvas_fov_u8)  # black outside the FOV (15x faster than indexing)
    return Prepared(canvas, canvas_fov_u8 > 0, mask, circle, t)
