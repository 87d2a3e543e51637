"""Vessel evaluation: run a model exactly as `retina process` does, map probabilities back to each image's
own resolution, and score them inside the dataset's FOV mask against the first observer.

Per image and pooled over all pixels of the split: AUC, ACC, SE, SP, F1 (= Dice), IoU at the model's
default threshold.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from retinacli.metrics import Confusion, ScoreHistogram
from retinacli.preprocess.normalise import ScaleSpec, from_canvas, prepare
from retinacli.runtime.artefact import create_backend, read_model_info
from retinacli.train.datasets import Sample, load_fov, load_image, load_label

METRICS = ["AUC", "ACC", "SE", "SP", "F1", "IoU"]


@dataclass
class VesselEvaluation:
    per_image: pd.DataFrame   # one row per (model, dataset, image)
    overall: pd.DataFrame     # one row per (model, dataset): pooled over pixels
    thresholds: dict[str, float]


def predict_full_resolution(backend, spec: ScaleSpec, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 [H, W, 3] -> (vessel probability float32 [H, W], estimated FOV bool [H, W])."""
    prep = prepare(rgb, spec)
    prob = backend.run(prep.canvas.transpose(2, 0, 1)[None].copy())[0, 0]
    return from_canvas(prob, prep.transform), prep.fov_mask


def score_samples(backend, spec: ScaleSpec, samples: list[Sample], threshold: float,
                  on_image=None) -> tuple[ScoreHistogram, Confusion]:
    """Run ``backend`` on each sample as `retina process` does and score it at full resolution inside the
    dataset FOV (the estimated FOV where the dataset has none). Returns the pooled histogram and confusion;
    ``on_image(sample, metrics)`` receives each image's own AUC/ACC/SE/SP/F1/IoU."""
    pooled_hist, pooled_conf = ScoreHistogram(), Confusion()
    for s in samples:
        rgb = load_image(s)
        label = load_label(s, rgb.shape[:2])
        prob, est_fov = predict_full_resolution(backend, spec, rgb)
        fov = load_fov(s)
        fov = est_fov if fov is None else fov
        hist, conf = ScoreHistogram(), Confusion()
        hist.add(prob, label, fov)
        conf.add(prob >= threshold, label, fov)
        pooled_hist.merge(hist)
        pooled_conf.merge(conf)
        if on_image is not None:
            on_image(s, {"AUC": hist.auc(), **conf.metrics()})
    return pooled_hist, pooled_conf


def evaluate_vessels(datasets: dict[str, list[Sample]], models: dict[str, Path], backend: str = "auto",
                     threshold: float | None = None, progress: bool = True) -> VesselEvaluation:
    """Score every model on every dataset. ``threshold`` overrides the models' own default thresholds."""
    per_image, overall, thresholds = [], [], {}
    for model_name, model_path in models.items():
        info = read_model_info(model_path)
        thr = info.threshold if threshold is None else threshold
        thresholds[model_name] = thr
        be = create_backend(info, backend)
        spec = info.scale_spec()
        for ds_name, samples in datasets.items():
            bar = tqdm(samples, desc=f"{model_name} on {ds_name}", unit="img", disable=not progress)
            hist, conf = score_samples(be, spec, bar, thr, lambda s, m: per_image.append(
                {"model": model_name, "dataset": ds_name, "image": s.sample_id, **m}))
            overall.append({"model": model_name, "dataset": ds_name, "images": len(samples), "AUC": hist.auc(),
                            **conf.metrics(), "threshold": thr})
        be.close()
    return VesselEvaluation(pd.DataFrame(per_image), pd.DataFrame(overall), thresholds)


def format_table(overall: pd.DataFrame) -> str:
    """Plain-text table: one line per dataset x model, metrics to 4 decimals."""
    cols = ["dataset", "model", "images", *METRICS, "threshold"]
    return overall[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}")
