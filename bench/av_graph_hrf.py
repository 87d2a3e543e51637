"""Benchmark: A/V graph post-processing (skeleton, graph, votes, propagation, painting, table) on HRF-AV labels.

No model is needed: the inputs are made from the manual A/V label (0 bg, 1 artery, 2 vein, 3 uncertain):
vessel mask = label > 0; clean evidence p_artery = 0.9 / p_vein = 0.1 on arteries, the reverse on veins, 0.5 / 0.5 on
uncertain pixels; then, to make the evidence noisy, a random ``--flip`` share (default 20%) of the vessel pixels get
their artery and vein probabilities swapped, in blobs (the flip decision is drawn on a grid of ``--blob`` px cells,
so it hits whole stretches of vessel, as a model's mistakes do) -- set ``--blob 1`` for independent pixels.
Prints seconds per image (best of ``--repeat``, image size stated) and, as a sanity figure, the pixel A/V accuracy
against the label (artery and vein pixels only): pixel argmax of the noisy evidence, segment votes painted back
without propagation, and the full post-processing.

    python bench/av_graph_hrf.py [--datasets ../shared/datasets] [--images 3] [--repeat 3] [--flip 0.2] [--blob 8]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from retinacli.postprocess.av_labels import AvGraphConfig, label_vessels_av, paint_labels

ROOT = Path(__file__).resolve().parent.parent


def noisy_probs(label: np.ndarray, flip: float, blob: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [H, W] A/V label -> float32 (p_artery, p_vein) [H, W] with a ``flip`` share of vessel pixels swapped."""
    p_a = np.select([label == 1, label == 2, label == 3], [0.9, 0.1, 0.5], 0.0).astype(np.float32)
    p_v = np.select([label == 1, label == 2, label == 3], [0.1, 0.9, 0.5], 0.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    h, w = label.shape
    cells = rng.random((-(-h // blob), -(-w // blob))) < flip
    swap = np.repeat(np.repeat(cells, blob, 0), blob, 1)[:h, :w] & (label > 0)
    p_a[swap], p_v[swap] = p_v[swap], p_a[swap].copy()
    return p_a, p_v


def av_accuracy(pred: np.ndarray, label: np.ndarray) -> float:
    """Share of artery/vein label pixels whose predicted label (1/2) matches."""
    sel = (label == 1) | (label == 2)
    return float(np.mean(pred[sel] == label[sel]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--images", type=int, default=3, help="how many test labels to run (sorted by name)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per image; the best is reported")
    ap.add_argument("--flip", type=float, default=0.2)
    ap.add_argument("--blob", type=int, default=8)
    ap.add_argument("--min-confidence", type=float, default=AvGraphConfig().min_confidence)
    args = ap.parse_args()
    files = sorted((args.datasets / "HRF-AV" / "test" / "1st_manual").glob("*_AVmanual.png"))[: args.images]
    if not files:
        print(f"skipped: no HRF-AV test labels under {args.datasets / 'HRF-AV/test/1st_manual'}")
        return
    cfg = AvGraphConfig(min_confidence=args.min_confidence)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, "
          f"python {platform.python_version()}; {cfg}; flip {args.flip:.0%} in {args.blob}px blobs")
    times, accs = [], []
    for i, f in enumerate(files):
        label = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        if label.ndim == 3:
            label = label[..., 0]
        mask = label > 0
        p_a, p_v = noisy_probs(label, args.flip, args.blob, seed=i)
        best = np.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = label_vessels_av(mask, p_a, p_v, cfg)
            best = min(best, time.perf_counter() - t0)
        times.append(best)
        before = np.where(mask, np.where(p_v > p_a, 2, 1), 0)
        votes_only = paint_labels(res.graph.segment_labels, res.votes.label, mask)
        accs.append([av_accuracy(x, label) for x in (before, votes_only, res.label_map)])
        kinds = [kp.kind for kp in res.graph.keypoints.values()]
        print(f"{f.name} ({label.shape[1]}x{label.shape[0]}): {best:.3f} s (best of {args.repeat}); "
              f"{res.graph.n_segments} segments, {kinds.count('branching')} branchings, "
              f"{kinds.count('crossing')} crossings, {int(res.table['propagated'].sum())} propagated; "
              f"A/V pixel accuracy: pixel argmax {av_accuracy(before, label):.3f}, "
              f"segment votes {av_accuracy(votes_only, label):.3f}, "
              f"+ propagation {av_accuracy(res.label_map, label):.3f}")
    acc = np.mean(accs, axis=0)
    print(f"mean {np.mean(times):.3f} s, max {np.max(times):.3f} s per image over {len(times)} images; mean A/V "
          f"pixel accuracy: pixel argmax {acc[0]:.3f}, segment votes {acc[1]:.3f}, + propagation {acc[2]:.3f}")


if __name__ == "__main__":
    main()
