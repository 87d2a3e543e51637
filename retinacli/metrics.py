"""Segmentation metrics shared by training and evaluation. Pure functions on numpy arrays.

Probabilities are float arrays in [0, 1]; labels and masks are boolean arrays of the same shape.
AUC and AUPR use a 65,536-bin histogram of the probabilities (exact for the quantised scores; the
quantisation step 1.5e-5 changes AUC by far less than 1e-4) so that many megapixels pool cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

N_BINS = 65536


def _bins(prob: np.ndarray) -> np.ndarray:
    return np.clip((np.asarray(prob, dtype=np.float64) * (N_BINS - 1)).round(), 0, N_BINS - 1).astype(np.int64)


@dataclass
class ScoreHistogram:
    """Positive/negative counts per probability bin; add() images one by one, then read pooled metrics."""

    pos: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS, np.int64))
    neg: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS, np.int64))

    def add(self, prob: np.ndarray, label: np.ndarray, mask: np.ndarray | None = None) -> None:
        prob = np.asarray(prob)
        label = np.asarray(label, dtype=bool)
        if mask is not None:
            prob, label = prob[mask], label[mask]
        b = _bins(prob.ravel())
        lab = label.ravel()
        self.pos += np.bincount(b[lab], minlength=N_BINS)
        self.neg += np.bincount(b[~lab], minlength=N_BINS)

    def merge(self, other: "ScoreHistogram") -> None:
        """Add another histogram's counts (pool per-image histograms without binning twice)."""
        self.pos += other.pos
        self.neg += other.neg

    def f1_at(self, threshold: float) -> float:
        """F1 when predicting prob >= threshold (threshold snapped to the bin grid)."""
        return float(self.f1_curve()[int(np.ceil(threshold * (N_BINS - 1) - 0.5))])

    def auc(self) -> float:
        """Area under the ROC curve (ties count one half)."""
        n_pos, n_neg = self.pos.sum(), self.neg.sum()
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        neg_below = np.cumsum(self.neg) - self.neg  # negatives with a strictly lower score
        wins = (self.pos * neg_below).sum() + 0.5 * (self.pos * self.neg).sum()
        return float(wins / (n_pos * n_neg))

    def aupr(self) -> float:
        """Area under the precision-recall curve (average precision, step-wise from high to low scores)."""
        n_pos = self.pos.sum()
        if n_pos == 0:
            return float("nan")
        tp = np.cumsum(self.pos[::-1])
        fp = np.cumsum(self.neg[::-1])
        keep = (self.pos[::-1] + self.neg[::-1]) > 0
        tp, fp = tp[keep], fp[keep]
        precision = tp / np.maximum(tp + fp, 1)
        recall = tp / n_pos
        d_recall = np.diff(np.concatenate([[0.0], recall]))
        return float((precision * d_recall).sum())

    def f1_curve(self) -> np.ndarray:
        """F1 [N_BINS] when predicting positive for every bin >= i (i.e. prob >= bin_lower_edge(i))."""
        tp = np.cumsum(self.pos[::-1])[::-1]
        fp = np.cumsum(self.neg[::-1])[::-1]
        fn = self.pos.sum() - tp
        return 2 * tp / np.maximum(2 * tp + fp + fn, 1)

    def best_threshold(self) -> tuple[float, float]:
        """(threshold, F1) maximising F1 when predicting prob >= threshold."""
        f1 = self.f1_curve()
        i = int(np.argmax(f1))
        return bin_lower_edge(i), float(f1[i])


def bin_lower_edge(i: int) -> float:
    """Smallest probability that falls in histogram bin i, so ``prob >= bin_lower_edge(i)`` selects bins >= i."""
    return max(i - 0.5, 0.0) / (N_BINS - 1)


def threshold_for_mean_f1(hists: list[ScoreHistogram]) -> tuple[float, list[float]]:
    """Threshold maximising the mean F1 over several datasets (each weighted equally, whatever its size).

    Returns (threshold, F1 of each dataset at it).
    """
    curves = np.stack([h.f1_curve() for h in hists])
    i = int(np.argmax(curves.mean(axis=0)))
    return bin_lower_edge(i), [float(c[i]) for c in curves]


@dataclass
class Confusion:
    """Pixel confusion counts at one threshold."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def merge(self, other: "Confusion") -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.tn += other.tn
        self.fn += other.fn

    def add(self, pred: np.ndarray, label: np.ndarray, mask: np.ndarray | None = None) -> None:
        pred = np.asarray(pred, dtype=bool)
        label = np.asarray(label, dtype=bool)
        if mask is not None:
            pred, label = pred[mask], label[mask]
        self.tp += int(np.count_nonzero(pred & label))
        self.fp += int(np.count_nonzero(pred & ~label))
        self.fn += int(np.count_nonzero(~pred & label))
        self.tn += int(np.count_nonzero(~pred & ~label))

    def metrics(self) -> dict[str, float]:
        """ACC, SE (sensitivity/recall), SP (specificity), F1 (= Dice), IoU; NaN where undefined."""
        tp, fp, tn, fn = self.tp, self.fp, self.tn, self.fn

        def div(a: float, b: float) -> float:
            return float(a / b) if b else float("nan")

        return {
            "ACC": div(tp + tn, tp + tn + fp + fn),
            "SE": div(tp, tp + fn),
            "SP": div(tn, tn + fp),
            "F1": div(2 * tp, 2 * tp + fp + fn),
            "IoU": div(tp, tp + fp + fn),
        }


def segmentation_metrics(prob: np.ndarray, label: np.ndarray, mask: np.ndarray | None, threshold: float) -> dict[str, float]:
    """AUC, ACC, SE, SP, F1 (Dice), IoU for one image (or one pooled set) inside ``mask``."""
    hist = ScoreHistogram()
    hist.add(prob, label, mask)
    conf = Confusion()
    conf.add(np.asarray(prob) >= threshold, label, mask)
    return {"AUC": hist.auc(), **conf.metrics()}
