"""Choose a model's inference scale and default threshold on its validation images at their own resolution.

Scale: among candidate FOV diameters (model pixels), the one with the highest mean AUC over the validation
datasets. Threshold: at that scale, the one maximising the mean F1 over the validation datasets. Each
dataset (DRIVE, CHASE, HRF...) weighs the same whatever its pixel count, and everything is scored exactly
as `retina evaluate` scores (full resolution, inside the dataset FOV), so one setting serves every camera.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from retinacli.evaluate.vessels import score_samples
from retinacli.metrics import ScoreHistogram, threshold_for_mean_f1
from retinacli.preprocess.normalise import ScaleSpec
from retinacli.runtime.torch_backend import TorchBackend
from retinacli.train.checkpoint import load_checkpoint, save_checkpoint
from retinacli.train.datasets import Sample, group_by_dataset

CANVAS_MARGIN_PX = 32  # canvas side = FOV diameter + margin, rounded up to a multiple of 16


def canvas_for(fov_diameter_px: int) -> int:
    return int(-(-(fov_diameter_px + CANVAS_MARGIN_PX) // 16) * 16)


def _histograms(checkpoint: Path, groups: dict[str, list[Sample]], canvas_px: int, fov_px: int) -> list[ScoreHistogram]:
    backend = TorchBackend(checkpoint, canvas_px=canvas_px)
    spec = ScaleSpec(canvas_px, fov_px)
    return [score_samples(backend, spec, group, threshold=0.5)[0] for group in groups.values()]


def calibrate_threshold(checkpoint: Path, samples: list[Sample], fov_candidates: list[int] | None = None) -> dict:
    """Pick the scale (from ``fov_candidates``; default: keep the checkpoint's) and the mean-F1 threshold of
    ``checkpoint`` on ``samples``, and write both into the checkpoint.

    Returns {"threshold", "previous_threshold", "fov_diameter_px", "canvas_px", "per_dataset_f1",
    "scale_search", "images", "method"}.
    """
    ck = load_checkpoint(checkpoint)
    pre = ck["preprocess"]
    current = int(pre["fov_diameter_px"])
    candidates = sorted(set(fov_candidates or [current]))
    groups = group_by_dataset(samples)
    search, best = [], None
    for fov_px in candidates:
        canvas = int(pre["canvas_px"]) if fov_px == current else canvas_for(fov_px)
        hists = _histograms(checkpoint, groups, canvas, fov_px)
        aucs = [h.auc() for h in hists]
        search.append({"fov_diameter_px": fov_px, "canvas_px": canvas, "per_dataset_auc": dict(zip(groups, aucs)),
                       "mean_auc": float(np.mean(aucs))})
        if best is None or search[-1]["mean_auc"] > best[0]["mean_auc"]:
            best = (search[-1], hists)
    chosen, hists = best
    thr, f1s = threshold_for_mean_f1(hists)
    info = {"threshold": thr, "previous_threshold": ck["threshold"], "fov_diameter_px": chosen["fov_diameter_px"],
            "canvas_px": chosen["canvas_px"], "trained_fov_diameter_px": int(pre.get("trained_fov_diameter_px", current)),
            "per_dataset_f1": dict(zip(groups, f1s)), "scale_search": search,
            "images": {k: [s.sample_id for s in v] for k, v in groups.items()},
            "method": "scale: max mean AUC over validation datasets; threshold: max mean F1 at that scale; "
                      "full resolution, inside the dataset FOV"}
    ck["preprocess"] = {**pre, "canvas_px": chosen["canvas_px"], "fov_diameter_px": chosen["fov_diameter_px"],
                        "trained_fov_diameter_px": info["trained_fov_diameter_px"]}
    ck["threshold"] = thr
    ck["threshold_calibration"] = info
    save_checkpoint(ck, checkpoint)
    return info
