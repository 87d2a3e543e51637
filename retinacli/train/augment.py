"""Random patch sampling with geometric and photometric augmentation. Pure numpy/cv2 given an RNG."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation. Scales are relative (1.0 = model scale)."""

    scale_min: float = 0.8
    scale_max: float = 1.25
    rotate: bool = True
    flip: bool = True
    brightness: float = 0.25   # multiplicative, +-
    contrast: float = 0.25     # +- around the patch mean
    gamma: float = 0.3         # log-uniform exponent range +-
    channel_jitter: float = 0.1
    blur_prob: float = 0.2
    blur_sigma_max: float = 1.2
    noise_std: float = 4.0     # grey levels


POSITIVE_SAMPLING = ("pixel", "component")


@dataclass(frozen=True)
class PositiveIndex:
    """The label pixels of one canvas grouped by 8-connected component, built once per image for fast draws.

    ys, xs: int arrays [P], pixel rows/columns in row-major order (as np.nonzero gives them, so "pixel" draws are
    the same as before components existed); order: int array [P], indices into ys/xs sorted by component; starts:
    int array [K + 1], component k holds order[starts[k]:starts[k + 1]]. K = 0 when the label is empty.
    """

    ys: np.ndarray
    xs: np.ndarray
    order: np.ndarray
    starts: np.ndarray

    @classmethod
    def from_label(cls, label: np.ndarray) -> "PositiveIndex":
        """label bool/uint8/float [H, W] (> 0 = positive) -> the index of its pixels and components."""
        n, comp = cv2.connectedComponents((np.asarray(label) > 0).astype(np.uint8), connectivity=8)
        ys, xs = np.nonzero(comp)
        ids = comp[ys, xs]
        counts = np.bincount(ids, minlength=n)[1:]
        return cls(ys, xs, np.argsort(ids, kind="stable"), np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))

    @property
    def n_components(self) -> int:
        return len(self.starts) - 1

    def draw(self, rng: np.random.Generator, mode: str = "pixel") -> tuple[int, int]:
        """One positive pixel (row, column). mode "pixel": uniform over all positive pixels (large components
        dominate); "component": a component uniformly, then a pixel of it (small lesions as often as large ones)."""
        if self.n_components == 0:
            raise ValueError("the label has no positive pixel")
        if mode == "pixel":
            i = int(rng.integers(len(self.ys)))
        elif mode == "component":
            k = int(rng.integers(self.n_components))
            i = int(self.order[rng.integers(self.starts[k], self.starts[k + 1])])
        else:
            raise ValueError(f"positive sampling must be one of {POSITIVE_SAMPLING}, not {mode!r}")
        return int(self.ys[i]), int(self.xs[i])


def sample_patch(image: np.ndarray, label: np.ndarray, fov: np.ndarray, size: int, rng: np.random.Generator,
                 cfg: AugmentConfig, extra: np.ndarray | None = None, positive_fraction: float = 0.0,
                 positives: PositiveIndex | None = None, positive_sampling: str = "pixel"
                 ) -> tuple[np.ndarray, ...]:
    """Cut one augmented patch.

    image uint8 [S, S, 3], label/fov/extra float32 or uint8 [S, S] (model canvas) ->
    (image uint8 [size, size, 3], label float32, fov float32[, extra float32]), each [size, size].
    The patch centre is drawn uniformly among FOV pixels, or, with probability ``positive_fraction`` and when
    the label has any, on a label pixel (for sparse targets such as haemorrhages) drawn by ``positive_sampling``
    (see PositiveIndex.draw). ``positives``: the label's PositiveIndex, if the caller keeps one (else built here).
    """
    if positive_sampling not in POSITIVE_SAMPLING:
        raise ValueError(f"positive sampling must be one of {POSITIVE_SAMPLING}, not {positive_sampling!r}")
    centre = None
    if positive_fraction > 0 and rng.random() < positive_fraction:
        index = positives if positives is not None else PositiveIndex.from_label(label)
        if index.n_components:
            centre = index.draw(rng, positive_sampling)
    if centre is None:
        ys, xs = np.nonzero(fov)
        i = rng.integers(len(ys))
        centre = (int(ys[i]), int(xs[i]))
    cy, cx = float(centre[0]), float(centre[1])
    s = float(np.exp(rng.uniform(np.log(cfg.scale_min), np.log(cfg.scale_max))))
    angle = float(rng.uniform(0, 360)) if cfg.rotate else 0.0
    m = cv2.getRotationMatrix2D((cx, cy), angle, s)
    m[0, 2] += size / 2.0 - cx
    m[1, 2] += size / 2.0 - cy
    if cfg.flip and rng.random() < 0.5:
        m[0] = -m[0]
        m[0, 2] += size - 1
    warp = lambda a, interp: cv2.warpAffine(a, m, (size, size), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    img = warp(image, cv2.INTER_LINEAR).astype(np.float32)
    lab = warp(label.astype(np.float32), cv2.INTER_LINEAR)
    fv = warp(fov.astype(np.float32), cv2.INTER_LINEAR) > 0.5
    img = photometric(img, fv, rng, cfg)
    out = [img, (lab > 0.5).astype(np.float32), fv.astype(np.float32)]
    if extra is not None:
        out.append((warp(extra.astype(np.float32), cv2.INTER_LINEAR) > 0.5).astype(np.float32))
    return tuple(out)


def photometric(img: np.ndarray, fov: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Brightness, contrast, gamma, per-channel gain, blur and noise on a float RGB patch; outside FOV -> 0."""
    img = img * (1.0 + rng.uniform(-cfg.brightness, cfg.brightness))
    img = img * (1.0 + rng.uniform(-cfg.channel_jitter, cfg.channel_jitter, size=3)).astype(np.float32)
    mean = img[fov].mean() if fov.any() else 0.0
    img = (img - mean) * (1.0 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
    img = np.clip(img, 0, 255)
    g = float(np.exp(rng.uniform(-cfg.gamma, cfg.gamma)))
    img = 255.0 * (img / 255.0) ** g
    if rng.random() < cfg.blur_prob:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, cfg.blur_sigma_max)))
    img = img + rng.normal(0, cfg.noise_std, size=img.shape).astype(np.float32)
    img = np.clip(img, 1, 255)  # keep FOV pixels non-zero so the FOV stays recoverable from the image
    img[~fov] = 0
    return np.round(img).astype(np.uint8)
