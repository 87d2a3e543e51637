"""Diagnostic: how much A/V accuracy the graph post-processing leaves on the table, on real model outputs.

Runs the A/V model as `retina evaluate av` does (same preparation, threshold, graph settings scaled to the FOV) on
the model's own validation images (``metadata.json`` -> ``training.val_ids``; ``--data`` for other images) and scores
pixel A/V accuracy on the labelled artery and vein pixels inside the FOV (the evaluation protocol) for:

- before: the pixel argmax of p_artery, p_vein;
- votes: every segment's own vote painted back (no propagation);
- after: the product's post-processing (votes, propagation, painting);
- oracle: every segment labelled with the majority manual label of its skeleton pixels: the upper bound of any
  one-label-per-segment rule on this graph;
- oracle for uncertain segments: segments with confidence >= ``min_confidence`` keep their vote, the others take
  the oracle label: the upper bound of any rule that, like the product's, only relabels uncertain segments.

Per image it also prints how segment labels go wrong, weighted by the manual-labelled skeleton pixels they hold:
the share in segments whose final label differs from the oracle (confident and uncertain ones separately) and the
purity of the segments (share of those pixels agreeing with their segment's majority label).

    python bench/av_graph_headroom.py [--model engines/av] [--datasets ../shared/datasets] [--data SPEC ...]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from retinacli.evaluate.av import AvCounts, predict_av
from retinacli.postprocess.av_labels import ARTERY, VEIN, AvGraphConfig, label_vessels_av, paint_labels
from retinacli.runtime.artefact import create_backend, read_model_info
from retinacli.train.datasets import load_av_label, load_fov, load_image, read_spec

ROOT = Path(__file__).resolve().parent.parent
RULES = ("before", "votes", "after", "oracle", "oracle_for_uncertain")


def segment_truth(segment_labels: np.ndarray, label: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Manual artery and vein pixel counts on each segment's skeleton pixels: float [n] each (entry 0 unused, 0)."""
    art = np.bincount(segment_labels[label == ARTERY], minlength=n).astype(float)
    vein = np.bincount(segment_labels[label == VEIN], minlength=n).astype(float)
    art[0] = vein[0] = 0.0
    return art, vein


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "engines" / "av")
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--data", action="append", default=None,
                    help="dataset spec (e.g. rite:../shared/datasets/RITE:test); default: the model's validation "
                         "images from the RITE and HRF-AV training splits")
    args = ap.parse_args()
    info = read_model_info(args.model)
    if args.data:
        samples = [s for spec in args.data for s in read_spec(spec)]
    else:
        val = set(info.metadata.get("training", {}).get("val_ids") or [])
        samples = [s for spec in (f"rite:{args.datasets / 'RITE'}:training", f"hrf:{args.datasets / 'HRF-AV'}:training")
                   for s in read_spec(spec) if s.sample_id in val]
    if not samples:
        raise SystemExit("no images: give --data, or a model whose metadata lists its validation images")
    backend, spec, base = create_backend(info), info.scale_spec(), AvGraphConfig()
    pooled = {rule: AvCounts() for rule in RULES}
    print(f"model {args.model}, {len(samples)} images, vessel threshold {info.threshold:.4f}, "
          f"min_confidence {base.min_confidence}")
    for s in samples:
        label = load_av_label(s)
        p_ves, p_a, p_v, prep = predict_av(backend, spec, load_image(s))
        fov = load_fov(s)
        fov = prep.fov_mask if fov is None else fov
        known = ((label == ARTERY) | (label == VEIN)) & fov
        res = label_vessels_av((p_ves >= info.threshold) & fov, p_a, p_v,
                               base.for_fov_diameter(prep.circle.diameter_px))
        seg = res.graph.segment_labels
        art, vein = segment_truth(seg, label, res.graph.n_segments + 1)
        has = art + vein > 0
        vote = res.votes.label.astype(np.uint8)
        confident = res.votes.confidence >= base.min_confidence
        oracle = np.where(has, np.where(art >= vein, ARTERY, VEIN), vote).astype(np.uint8)
        after = np.concatenate([[0], np.asarray(res.table["label"], np.uint8)])
        before = np.where(p_a >= p_v, ARTERY, VEIN).astype(np.uint8)

        def painted(labels: np.ndarray) -> np.ndarray:
            labels = labels.copy()
            labels[0] = 0
            out = paint_labels(seg, labels, known)
            return np.where(out > 0, out, before)

        maps = {"before": before, "votes": painted(vote), "after": painted(after), "oracle": painted(oracle),
                "oracle_for_uncertain": painted(np.where(confident, vote, oracle).astype(np.uint8))}
        cells = []
        for rule, pred in maps.items():
            c = AvCounts()
            c.add(pred, label, known)
            pooled[rule].merge(c)
            cells.append(f"{rule} {c.metrics()['ACC']:.4f}")
        w = art + vein
        total = max(float(w.sum()), 1.0)
        wrong = (after != oracle) & has
        print(f"{s.sample_id}: " + ", ".join(cells) +
              f" | labelled skeleton px in wrong segments {w[wrong].sum() / total:.3f} (confident "
              f"{w[wrong & confident].sum() / total:.3f}, uncertain {w[wrong & ~confident].sum() / total:.3f}); "
              f"segment purity {np.maximum(art, vein).sum() / total:.3f}")
    print("pooled: " + ", ".join(f"{rule} {c.metrics()['ACC']:.4f}" for rule, c in pooled.items()))


if __name__ == "__main__":
    main()
