"""Choose a model's default threshold on its validation images at their own resolution.

The threshold maximises the mean F1 over the validation datasets (DRIVE, CHASE, HRF... each weighted
equally), computed exactly as `retina evaluate` scores (full resolution, inside the dataset FOV), so one
threshold serves every camera instead of favouring the dataset with the most pixels.
"""
from __future__ import annotations

from pathlib import Path

from retinacli.evaluate.vessels import predict_full_resolution
from retinacli.metrics import ScoreHistogram, threshold_for_mean_f1
from retinacli.preprocess.normalise import ScaleSpec
from retinacli.runtime.torch_backend import TorchBackend
from retinacli.train.checkpoint import load_checkpoint, save_checkpoint
from retinacli.train.datasets import Sample, load_fov, load_image, load_vessel_label


def group_by_dataset(samples: list[Sample]) -> dict[str, list[Sample]]:
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.sample_id.split("/")[0], []).append(s)
    return groups


def calibrate_threshold(checkpoint: Path, samples: list[Sample]) -> dict:
    """Compute the mean-F1 threshold of ``checkpoint`` on ``samples`` and write it into the checkpoint.

    Returns {"threshold", "previous_threshold", "per_dataset_f1", "images", "method"}.
    """
    ck = load_checkpoint(checkpoint)
    backend = TorchBackend(checkpoint)
    spec = ScaleSpec(int(ck["preprocess"]["canvas_px"]), int(ck["preprocess"]["fov_diameter_px"]))
    groups = group_by_dataset(samples)
    hists = []
    for group in groups.values():
        hist = ScoreHistogram()
        for s in group:
            prob, est_fov = predict_full_resolution(backend, spec, load_image(s))
            fov = load_fov(s)
            hist.add(prob, load_vessel_label(s), est_fov if fov is None else fov)
        hists.append(hist)
    thr, f1s = threshold_for_mean_f1(hists)
    info = {"threshold": thr, "previous_threshold": ck["threshold"], "per_dataset_f1": dict(zip(groups, f1s)),
            "images": {k: [s.sample_id for s in v] for k, v in groups.items()},
            "method": "max mean F1 over validation datasets, full resolution, inside the dataset FOV"}
    ck["threshold"] = thr
    ck["threshold_calibration"] = info
    save_checkpoint(ck, checkpoint)
    return info
