"""Haemorrhage evaluation: run a model exactly as `retina process` does, map its probabilities back to each
image's own resolution and score them inside the FOV (the dataset's, else the estimated one).

Pixel level, per image and pooled over every pixel of the split: AUPR (the IDRiD challenge metric), and at
the model's default threshold Dice (= F1), IoU, SE, SP, ACC. Lesion level: the share of ground-truth
components hit by the prediction (all, and those > ``min_gt_area_px``), and false-positive components per
image (predicted components below the product's minimum finding area are ignored, as in the report).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from retinacli.evaluate.lesion_detection import SIZE_BAND_EDGES_PX, LesionDetection, lesion_detection, size_band_names
from retinacli.evaluate.vessels import predict_full_resolution
from retinacli.metrics import Confusion, ScoreHistogram
from retinacli.runtime.artefact import create_backend, read_model_info, resolve_flips
from retinacli.runtime.flip_average import flips_label
from retinacli.train.datasets import Sample, load_fov, load_image, load_label

PIXEL_METRICS = ["AUPR", "AUC", "F1", "IoU", "SE", "SP", "ACC"]
LARGE_GT_AREA_PX = SIZE_BAND_EDGES_PX[0]  # "large" = > 100 px, the lesion-level criterion


@dataclass
class HemorrhageEvaluation:
    per_image: pd.DataFrame   # one row per (model, dataset, image)
    overall: pd.DataFrame     # one row per (model, dataset): pixels pooled, lesion counts summed


def _lesion_columns(d: LesionDetection, images: int) -> dict:
    share = lambda a, b: a / b if b else float("nan")
    return {**d.as_dict(), "lesion_recall": share(d.gt_detected, d.gt_components),
            "lesion_recall_large": share(d.gt_large_detected, d.gt_large_components),
            "fp_components_per_image": share(d.fp_components, images),
            **{f"lesion_recall_{k}": v for k, v in d.recall_by_size().items()}}


def evaluate_hemorrhage(datasets: dict[str, list[Sample]], models: dict[str, Path], backend: str = "auto",
                        threshold: float | None = None, min_finding_area_px: int = 4,
                        progress: bool = True, flips=None) -> HemorrhageEvaluation:
    """Score every model on every dataset; ``threshold`` overrides the models' own default thresholds.
    ``min_finding_area_px``: predicted components smaller than this are not findings (``HintConfig`` default).
    ``flips``: test-time flips (None: what each artefact says, as `retina process` runs it; (): one pass)."""
    per_image, overall = [], []
    for model_name, model_path in models.items():
        info = read_model_info(model_path)
        thr = info.threshold if threshold is None else threshold
        be = create_backend(info, backend, flips=flips)
        used_flips = flips_label(resolve_flips(info, flips))
        spec = info.scale_spec()
        for ds_name, samples in datasets.items():
            hist, conf, lesions = ScoreHistogram(), Confusion(), LesionDetection()
            for s in tqdm(samples, desc=f"{model_name} on {ds_name}", unit="img", disable=not progress):
                rgb = load_image(s)
                label = load_label(s, rgb.shape[:2])
                prob, est_fov = predict_full_resolution(be, spec, rgb)
                fov = load_fov(s)
                fov = est_fov if fov is None else fov
                pred = prob >= thr
                h, c = ScoreHistogram(), Confusion()
                h.add(prob, label, fov)
                c.add(pred, label, fov)
                d = lesion_detection(pred, label, fov, LARGE_GT_AREA_PX, min_finding_area_px)
                hist.merge(h)
                conf.merge(c)
                lesions = lesions + d
                per_image.append({"model": model_name, "dataset": ds_name, "image": s.sample_id,
                                  "gt_pixels": int(np.count_nonzero(label & fov)), "AUPR": h.aupr(), "AUC": h.auc(),
                                  **c.metrics(), **_lesion_columns(d, 1)})
            overall.append({"model": model_name, "dataset": ds_name, "images": len(samples), "AUPR": hist.aupr(),
                            "AUC": hist.auc(), **conf.metrics(), **_lesion_columns(lesions, len(samples)),
                            "threshold": thr, "test_time_flips": used_flips})
        be.close()
    return HemorrhageEvaluation(pd.DataFrame(per_image), pd.DataFrame(overall))


def format_table(overall: pd.DataFrame) -> str:
    """Plain-text tables: pixel metrics, lesion-level recall and false positives per image; then lesion recall
    by ground-truth component size (detected / components per band)."""
    cols = ["dataset", "model", "images", *PIXEL_METRICS, "lesion_recall", "lesion_recall_large",
            "fp_components_per_image", "threshold", "test_time_flips"]
    main = overall[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}")
    by_size = overall[["dataset", "model"]].copy()
    for name in size_band_names():
        by_size[name] = [f"{r[f'lesion_recall_{name}']:.1%} ({r[f'gt_detected_{name}']}/{r[f'gt_components_{name}']})"
                         if r[f"gt_components_{name}"] else "-" for _, r in overall.iterrows()]
    return f"{main}\n\nlesion recall by ground-truth component size (pixels at full resolution):\n" \
           f"{by_size.to_string(index=False)}"
