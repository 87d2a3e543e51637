"""Load labelled samples onto the model canvas (same FOV estimate and transform as at inference)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

import cv2

from retinacli.preprocess.normalise import ScaleSpec, prepare, to_canvas
from retinacli.train.datasets import AV_LABEL_KINDS, Sample, group_by_dataset, load_av_label, load_image, load_label


@dataclass
class CanvasSample:
    """One training/validation image on the model canvas: image uint8 [S,S,3], label and fov bool [S,S]; for A/V
    training also ``av`` uint8 [S,S] (0 background, 1 artery, 2 vein, 3 uncertain or crossing)."""

    sample_id: str
    image: np.ndarray
    label: np.ndarray
    fov: np.ndarray
    av: np.ndarray | None = None


def to_canvas_sample(sample: Sample, spec: ScaleSpec, with_av: bool = False) -> CanvasSample:
    rgb = load_image(sample)
    label = load_label(sample, rgb.shape[:2])
    if label.shape != rgb.shape[:2]:
        raise ValueError(f"{sample.sample_id}: label {label.shape} does not match image {rgb.shape[:2]}")
    prep = prepare(rgb, spec)
    lab = to_canvas(label.astype(np.float32), prep.transform) > 0.5
    av = None
    if with_av:
        if sample.label_kind not in AV_LABEL_KINDS:
            raise ValueError(f"{sample.sample_id}: A/V training needs artery/vein labels (rite or hrf datasets)")
        av = to_canvas(load_av_label(sample), prep.transform, cv2.INTER_NEAREST) * prep.canvas_fov
    return CanvasSample(sample.sample_id, prep.canvas, lab & prep.canvas_fov, prep.canvas_fov, av)


def load_canvas_samples(samples: list[Sample], spec: ScaleSpec, desc: str = "loading",
                        with_av: bool = False) -> list[CanvasSample]:
    return [to_canvas_sample(s, spec, with_av) for s in tqdm(samples, desc=desc, unit="img")]


def split_train_val(samples: list[Sample], val_every: int) -> tuple[list[Sample], list[Sample]]:
    """Every ``val_every``-th sample of each dataset (by id prefix) goes to validation, starting with the last."""
    if val_every <= 0:
        return samples, []
    train, val = [], []
    for group in group_by_dataset(samples).values():
        for i, s in enumerate(reversed(group)):
            (val if i % val_every == 0 and len(group) > 1 else train).append(s)
    return train, val
