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


def sample_patch(image: np.ndarray, label: np.ndarray, fov: np.ndarray, size: int, rng: np.random.Generator,
                 cfg: AugmentConfig, extra: np.ndarray | None = None, positive_fraction: float = 0.0
                 ) -> tuple[np.ndarray, ...]:
    """Cut one augmented patch.

    image uint8 [S, S, 3], label/fov/extra float32 or uint8 [S, S] (model canvas) ->
    (image uint8 [size, size, 3], label float32, fov float32[, extra float32]), each [size, size].
    The patch centre is drawn uniformly among FOV pixels, or, with probability ``positive_fraction`` and when
    the label has any, among label pixels (for sparse targets such as haemorrhages).
    """
    ys, xs = np.nonzero(fov)
    if positive_fraction > 0 and rng.random() < positive_fraction:
        ly, lx = np.nonzero(label)
        if len(ly):
            ys, xs = ly, lx
    i = rng.integers(len(ys))
    cy, cx = float(ys[i]), float(xs[i])
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
