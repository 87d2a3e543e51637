"""Artery/vein evaluation: run the A/V model as `retina process` would, map its vessel / artery / vein
probabilities back to each image's own resolution, and score the classification against the manual labels.

Protocol (the usual one): pixels labelled artery or vein inside the dataset FOV (crossing and uncertain pixels
excluded), whatever the model's vessel map says there. Artery is the positive class: accuracy, sensitivity
(arteries called artery), specificity (veins called vein). Also on centreline pixels (the skeleton of the manual
vessel mask, labelled artery or vein). Before post-processing each pixel takes argmax(p_artery, p_vein); after it,
the graph post-processing (``postprocess.av_labels``: segment votes, propagation) runs on the model's vessel mask
and every evaluated pixel takes the label of its nearest segment (the same painting rule as the product).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from retinacli.postprocess.av_labels import ARTERY, VEIN, AvGraphConfig, label_vessels_av, paint_labels
from retinacli.postprocess.vessel_graph import skeletonize_mask
from retinacli.preprocess.normalise import from_canvas, prepare
from retinacli.runtime.artefact import create_backend, read_model_info, resolve_flips
from retinacli.runtime.flip_average import flips_label
from retinacli.train.datasets import Sample, load_av_label, load_fov, load_image

STAGES = ("before", "after")
PIXEL_SETS = ("vessel", "centreline")


@dataclass
class AvEvaluation:
    per_image: pd.DataFrame   # one row per (model, dataset, image)
    overall: pd.DataFrame     # one row per (model, dataset): counts pooled over pixels


@dataclass
class AvCounts:
    """Artery-positive confusion counts on the evaluated pixels."""

    tp: int = 0  # artery called artery
    fn: int = 0  # artery called vein
    tn: int = 0  # vein called vein
    fp: int = 0  # vein called artery

    def add(self, pred: np.ndarray, label: np.ndarray, sel: np.ndarray) -> None:
        """pred, label uint8 [H, W] (1 artery, 2 vein); ``sel`` bool [H, W]: the pixels to count."""
        p, t = pred[sel], label[sel]
        self.tp += int(np.count_nonzero((t == ARTERY) & (p == ARTERY)))
        self.fn += int(np.count_nonzero((t == ARTERY) & (p != ARTERY)))
        self.tn += int(np.count_nonzero((t == VEIN) & (p == VEIN)))
        self.fp += int(np.count_nonzero((t == VEIN) & (p != VEIN)))

    def merge(self, o: "AvCounts") -> None:
        self.tp, self.fn, self.tn, self.fp = self.tp + o.tp, self.fn + o.fn, self.tn + o.tn, self.fp + o.fp

    def metrics(self) -> dict[str, float]:
        div = lambda a, b: a / b if b else float("nan")
        return {"ACC": div(self.tp + self.tn, self.tp + self.fn + self.tn + self.fp),
                "SE": div(self.tp, self.tp + self.fn), "SP": div(self.tn, self.tn + self.fp)}


def predict_av(backend, spec, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, object]:
    """RGB uint8 [H, W, 3] -> (p_vessel, p_artery, p_vein) float32 [H, W] at input resolution, and the Prepared."""
    prep = prepare(rgb, spec)
    probs = backend.run(prep.canvas.transpose(2, 0, 1)[None].copy())[0]
    if probs.shape[0] != 3:
        raise ValueError(f"expected an A/V model with 3 outputs (vessel, artery, vein), got {probs.shape[0]}")
    p_ves, p_a, p_v = (from_canvas(np.ascontiguousarray(c), prep.transform) for c in probs)
    return p_ves, p_a, p_v, prep


def av_labels_before_after(p_ves: np.ndarray, p_a: np.ndarray, p_v: np.ndarray, fov: np.ndarray, threshold: float,
                           targets: np.ndarray, config: AvGraphConfig) -> tuple[np.ndarray, np.ndarray]:
    """Pixel argmax labels and post-processed labels (uint8 [H, W], 1 artery / 2 vein) on ``targets`` (bool).
    Target pixels that no segment reaches keep their pixel label."""
    before = np.where(p_a >= p_v, ARTERY, VEIN).astype(np.uint8)
    mask = (p_ves >= threshold) & fov
    res = label_vessels_av(mask, p_a, p_v, config)
    seg_labels = np.concatenate([[0], np.asarray(res.table["label"], np.uint8)])
    painted = paint_labels(res.graph.segment_labels, seg_labels, targets) if res.graph.n_segments else \
        np.zeros_like(before)
    after = np.where(painted > 0, painted, before).astype(np.uint8)
    return before, after


def evaluate_av(datasets: dict[str, list[Sample]], models: dict[str, Path], backend: str = "auto",
                threshold: float | None = None, config: AvGraphConfig = AvGraphConfig(),
                progress: bool = True, flips=None) -> AvEvaluation:
    """Per-image and pooled rows: ACC/SE/SP for each pixel set (vessel, centreline) before and after the graph
    post-processing; the graph distances are scaled to each image's FOV diameter. ``flips``: test-time flips
    (None: what each artefact says, as `retina process` runs it; (): one pass)."""
    per_image, overall = [], []
    for model_name, model_path in models.items():
        info = read_model_info(model_path)
        thr = info.threshold if threshold is None else threshold
        be = create_backend(info, backend, flips=flips)
        used_flips = flips_label(resolve_flips(info, flips))
        spec = info.scale_spec()
        for ds_name, samples in datasets.items():
            pooled = {(st, ps): AvCounts() for st in STAGES for ps in PIXEL_SETS}
            for s in tqdm(samples, desc=f"{model_name} on {ds_name}", unit="img", disable=not progress):
                rgb = load_image(s)
                label = load_av_label(s)
                p_ves, p_a, p_v, prep = predict_av(be, spec, rgb)
                fov = load_fov(s)
                fov = prep.fov_mask if fov is None else fov
                known = ((label == ARTERY) | (label == VEIN)) & fov
                sets = {"vessel": known, "centreline": skeletonize_mask(label > 0) & known}
                cfg = config.for_fov_diameter(prep.circle.diameter_px)
                labels = dict(zip(STAGES, av_labels_before_after(p_ves, p_a, p_v, fov, thr, known, cfg)))
                row = {"model": model_name, "dataset": ds_name, "image": s.sample_id}
                for st in STAGES:
                    for ps in PIXEL_SETS:
                        c = AvCounts()
                        c.add(labels[st], label, sets[ps])
                        pooled[(st, ps)].merge(c)
                        row.update({f"{ps}_{k}_{st}": v for k, v in c.metrics().items()})
                per_image.append(row)
            row = {"model": model_name, "dataset": ds_name, "images": len(samples), "threshold": thr,
                   "test_time_flips": used_flips}
            for (st, ps), c in pooled.items():
                row.update({f"{ps}_{k}_{st}": v for k, v in c.metrics().items()})
            overall.append(row)
        be.close()
    return AvEvaluation(pd.DataFrame(per_image), pd.DataFrame(overall))


def format_table(overall: pd.DataFrame) -> str:
    """One line per dataset x model x pixel set: ACC, SE, SP before -> after the graph post-processing."""
    lines = []
    for _, r in overall.iterrows():
        for ps in PIXEL_SETS:
            cells = "  ".join(f"{k} {r[f'{ps}_{k}_before']:.4f} -> {r[f'{ps}_{k}_after']:.4f}" for k in ("ACC", "SE", "SP"))
            lines.append(f"{r['dataset']}  {r['model']}  {ps:<10} ({int(r['images'])} images)  {cells}")
    return "\n".join(lines)
