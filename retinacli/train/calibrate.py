"""Choose a model's inference scale and default threshold on its validation images at their own resolution.

Scale: among candidate scales -- fixed FOV diameters (model pixels), or image-following ranges in which each
image keeps its own FOV diameter clipped to [min, max] -- the one with the highest mean AUC over the validation
datasets. Threshold: at that scale, the one maximising the mean F1 over the validation datasets. Each
dataset (DRIVE, CHASE, HRF...) weighs the same whatever its pixel count, and everything is scored exactly
as `retina evaluate` scores (full resolution, inside the dataset FOV), so one setting serves every camera.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retinacli.evaluate.vessels import score_samples
from retinacli.metrics import ScoreHistogram, threshold_for_mean_f1
from retinacli.preprocess.normalise import ScaleSpec, scale_spec_of
from retinacli.runtime.torch_backend import TorchBackend
from retinacli.train.checkpoint import load_checkpoint, save_checkpoint
from retinacli.train.datasets import Sample, group_by_dataset

CANVAS_MARGIN_PX = 32  # canvas side = FOV diameter + margin, rounded up to a multiple of 16


def canvas_for(fov_diameter_px: int) -> int:
    return int(-(-(fov_diameter_px + CANVAS_MARGIN_PX) // 16) * 16)


@dataclass(frozen=True)
class ScaleCandidate:
    """An inference scale to try: FOV diameter ``fov_diameter_px`` (model px), or with ``min_fov_diameter_px``
    the image's own FOV diameter clipped to [min, fov_diameter_px] (see ``ScaleSpec``)."""

    fov_diameter_px: int
    min_fov_diameter_px: int | None = None

    def label(self) -> str:
        lo = self.min_fov_diameter_px
        return f"{self.fov_diameter_px}" if lo is None else f"{lo}-{self.fov_diameter_px}"


def parse_scale_candidates(text: str) -> list[ScaleCandidate]:
    """'800,1024,800-1024' -> fixed 800, fixed 1024, image-following between 800 and 1024."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        try:
            out.append(ScaleCandidate(int(hi), int(lo)) if dash else ScaleCandidate(int(lo)))
        except ValueError:
            raise ValueError(f"bad scale candidate {part!r}: use N (fixed FOV px) or MIN-MAX") from None
        ScaleSpec(canvas_for(out[-1].fov_diameter_px), out[-1].fov_diameter_px, out[-1].min_fov_diameter_px)  # checks
    return out


def _histograms(checkpoint: Path, groups: dict[str, list[Sample]], spec: ScaleSpec) -> list[ScoreHistogram]:
    backend = TorchBackend(checkpoint, canvas_sides=(spec.canvas_px,))
    return [score_samples(backend, spec, group, threshold=0.5)[0] for group in groups.values()]


def calibrate_threshold(checkpoint: Path, samples: list[Sample],
                        candidates: list[ScaleCandidate] | None = None) -> dict:
    """Pick the scale (from ``candidates``; default: keep the checkpoint's) and the mean-F1 threshold of
    ``checkpoint`` on ``samples``, and write both into the checkpoint.

    Returns {"threshold", "previous_threshold", "fov_diameter_px", "min_fov_diameter_px", "canvas_px",
    "per_dataset_f1", "scale_search", "images", "method"}.
    """
    ck = load_checkpoint(checkpoint)
    pre = ck["preprocess"]
    current = scale_spec_of(pre)
    candidates = list(dict.fromkeys(candidates or [ScaleCandidate(current.fov_diameter_px,
                                                                  current.min_fov_diameter_px)]))
    groups = group_by_dataset(samples)
    search, best = [], None
    for cand in candidates:
        canvas = current.canvas_px if cand.fov_diameter_px == current.fov_diameter_px else canvas_for(cand.fov_diameter_px)
        hists = _histograms(checkpoint, groups, ScaleSpec(canvas, cand.fov_diameter_px, cand.min_fov_diameter_px))
        aucs = [h.auc() for h in hists]
        search.append({"fov_diameter_px": cand.fov_diameter_px, "min_fov_diameter_px": cand.min_fov_diameter_px,
                       "label": cand.label(), "canvas_px": canvas, "per_dataset_auc": dict(zip(groups, aucs)),
                       "mean_auc": float(np.mean(aucs))})
        if best is None or search[-1]["mean_auc"] > best[0]["mean_auc"]:
            best = (search[-1], hists)
    chosen, hists = best
    thr, f1s = threshold_for_mean_f1(hists)
    trained = int(pre.get("trained_fov_diameter_px", current.fov_diameter_px))
    info = {"threshold": thr, "previous_threshold": ck["threshold"], "fov_diameter_px": chosen["fov_diameter_px"],
            "min_fov_diameter_px": chosen["min_fov_diameter_px"], "canvas_px": chosen["canvas_px"],
            "trained_fov_diameter_px": trained, "per_dataset_f1": dict(zip(groups, f1s)), "scale_search": search,
            "images": {k: [s.sample_id for s in v] for k, v in groups.items()},
            "method": "scale: max mean AUC over validation datasets; threshold: max mean F1 at that scale; "
                      "full resolution, inside the dataset FOV"}
    ck["preprocess"] = {**{k: v for k, v in pre.items() if k != "min_fov_diameter_px"},
                        "canvas_px": chosen["canvas_px"], "fov_diameter_px": chosen["fov_diameter_px"],
                        "trained_fov_diameter_px": trained,
                        **({} if chosen["min_fov_diameter_px"] is None
                           else {"min_fov_diameter_px": chosen["min_fov_diameter_px"]})}
    ck["threshold"] = thr
    ck["threshold_calibration"] = info
    save_checkpoint(ck, checkpoint)
    return info
