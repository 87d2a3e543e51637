"""Unit tests for retinacli.metrics against scikit-learn and hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from retinacli.metrics import N_BINS, Confusion, ScoreHistogram, segmentation_metrics


def _scores(seed: int, n: int = 20000, pos_rate: float = 0.15, sep: float = 0.25):
    rng = np.random.default_rng(seed)
    label = rng.random(n) < pos_rate
    prob = np.clip(rng.normal(0.4 + sep * label, 0.18), 0, 1)
    return prob, label


def _hist(prob, label, mask=None) -> ScoreHistogram:
    h = ScoreHistogram()
    h.add(prob, label, mask)
    return h


# ---------------------------------------------------------------- AUC


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_on_random_scores(seed):
    prob, label = _scores(seed)
    assert abs(_hist(prob, label).auc() - roc_auc_score(label, prob)) < 1e-4


def test_auc_pools_images_added_one_by_one():
    prob, label = _scores(5)
    h = ScoreHistogram()
    for part in np.array_split(np.arange(prob.size), 4):
        h.add(prob[part].reshape(-1, 10), label[part].reshape(-1, 10))  # 2-D "images"
    assert abs(h.auc() - roc_auc_score(label, prob)) < 1e-4
    assert h.pos.sum() == label.sum() and h.neg.sum() == (~label).sum()


def test_auc_perfect_inverted_and_uninformative():
    label = np.array([0, 0, 0, 1, 1], bool)
    assert _hist(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), label).auc() == 1.0
    assert _hist(np.array([0.9, 0.8, 0.7, 0.2, 0.1]), label).auc() == 0.0
    assert _hist(np.full(5, 0.5), label).auc() == 0.5  # all tied: one half per pair


def test_auc_with_ties_matches_sklearn_exactly():
    rng = np.random.default_rng(3)
    label = rng.random(3000) < 0.3
    prob = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=3000, p=[0.1, 0.3, 0.3, 0.2, 0.1])
    prob = np.where(label, np.minimum(prob + 0.25 * (rng.random(3000) < 0.5), 1.0), prob)
    assert _hist(prob, label).auc() == pytest.approx(roc_auc_score(label, prob), abs=1e-12)


def test_auc_undefined_without_both_classes():
    assert math.isnan(_hist(np.array([0.1, 0.9]), np.array([True, True])).auc())
    assert math.isnan(_hist(np.array([0.1, 0.9]), np.array([False, False])).auc())
    assert math.isnan(ScoreHistogram().auc())


# ---------------------------------------------------------------- AUPR


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aupr_matches_sklearn_average_precision(seed):
    prob, label = _scores(seed)
    assert abs(_hist(prob, label).aupr() - average_precision_score(label, prob)) < 1e-3


def test_aupr_with_ties_and_extremes():
    rng = np.random.default_rng(4)
    label = rng.random(2000) < 0.4
    prob = np.round(np.clip(rng.normal(0.4 + 0.2 * label, 0.2), 0, 1), 1)  # 11 distinct scores: many ties
    assert abs(_hist(prob, label).aupr() - average_precision_score(label, prob)) < 1e-9
    label = np.array([0, 0, 1, 1], bool)
    assert _hist(np.array([0.1, 0.2, 0.8, 0.9]), label).aupr() == pytest.approx(1.0)
    assert _hist(np.array([0.9, 0.8, 0.2, 0.1]), label).aupr() == pytest.approx(
        average_precision_score(label, [0.9, 0.8, 0.2, 0.1]))
    assert math.isnan(_hist(np.array([0.3, 0.6]), np.array([False, False])).aupr())


# ---------------------------------------------------------------- best threshold


def test_best_threshold_on_separable_scores():
    rng = np.random.default_rng(0)
    neg = rng.uniform(0.0, 0.3, 500)
    pos = rng.uniform(0.7, 1.0, 200)
    prob = np.concatenate([neg, pos])
    label = np.concatenate([np.zeros(500, bool), np.ones(200, bool)])
    thr, f1 = _hist(prob, label).best_threshold()
    assert f1 == 1.0
    assert neg.max() < thr <= pos.min()
    c = Confusion()
    c.add(prob >= thr, label)
    assert (c.fp, c.fn) == (0, 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_best_threshold_f1_is_reproduced_by_thresholding(seed):
    prob, label = _scores(seed, n=5000)
    h = _hist(prob, label)
    thr, f1 = h.best_threshold()
    assert 0.0 <= thr <= 1.0
    c = Confusion()
    c.add(prob >= thr, label)
    assert c.metrics()["F1"] == pytest.approx(f1, abs=1e-9)
    # no threshold on a grid does better than the one reported
    for t in np.linspace(0.05, 0.95, 19):
        c = Confusion()
        c.add(prob >= t, label)
        assert c.metrics()["F1"] <= f1 + 1e-9


# ---------------------------------------------------------------- Confusion / segmentation_metrics


def test_confusion_hand_computed():
    pred = np.array([1, 1, 0, 0, 1, 0, 1], bool)
    label = np.array([1, 0, 1, 0, 1, 0, 0], bool)
    c = Confusion()
    c.add(pred, label)
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 2, 2, 1)
    m = c.metrics()
    assert m["ACC"] == pytest.approx(4 / 7)
    assert m["SE"] == pytest.approx(2 / 3)
    assert m["SP"] == pytest.approx(2 / 4)
    assert m["F1"] == pytest.approx(4 / 7)  # 2TP / (2TP + FP + FN)
    assert m["IoU"] == pytest.approx(2 / 5)
    # counts accumulate over add() calls and respect the mask
    c.add(pred, label, mask=np.array([1, 0, 0, 0, 0, 0, 0], bool))
    assert (c.tp, c.fp, c.tn, c.fn) == (3, 2, 2, 1)


def test_confusion_undefined_metrics_are_nan():
    c = Confusion()
    c.add(np.zeros(4, bool), np.zeros(4, bool))
    m = c.metrics()
    assert m["ACC"] == 1.0 and m["SP"] == 1.0
    assert math.isnan(m["SE"]) and math.isnan(m["F1"]) and math.isnan(m["IoU"])
    assert all(math.isnan(v) for v in Confusion().metrics().values())


def test_segmentation_metrics_only_count_pixels_inside_the_mask():
    rng = np.random.default_rng(7)
    label = rng.random((40, 50)) < 0.2
    prob = np.clip(np.where(label, 0.7, 0.3) + rng.normal(0, 0.15, label.shape), 0, 1)
    mask = np.zeros_like(label)
    mask[5:35, 5:45] = True
    prob_outside_wrong = prob.copy()
    prob_outside_wrong[~mask] = 1.0 - label[~mask]  # maximally wrong outside the mask
    m = segmentation_metrics(prob_outside_wrong, label, mask, 0.5)
    assert set(m) == {"AUC", "ACC", "SE", "SP", "F1", "IoU"}
    assert m["AUC"] == pytest.approx(roc_auc_score(label[mask], prob[mask]), abs=1e-4)
    pred, lab = prob[mask] >= 0.5, label[mask]
    tp, fp = np.sum(pred & lab), np.sum(pred & ~lab)
    fn, tn = np.sum(~pred & lab), np.sum(~pred & ~lab)
    assert m["ACC"] == pytest.approx((tp + tn) / mask.sum())
    assert m["SE"] == pytest.approx(tp / (tp + fn))
    assert m["SP"] == pytest.approx(tn / (tn + fp))
    assert m["F1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["IoU"] == pytest.approx(tp / (tp + fp + fn))
    # without the mask the wrong border pixels count and every metric gets worse
    unmasked = segmentation_metrics(prob_outside_wrong, label, None, 0.5)
    assert unmasked["AUC"] < m["AUC"] and unmasked["ACC"] < m["ACC"]


def test_bins_cover_the_probability_range():
    h = _hist(np.array([-0.5, 0.0, 1.0, 1.5]), np.array([0, 0, 1, 1], bool))  # out-of-range scores are clipped
    assert h.neg[0] == 2 and h.pos[N_BINS - 1] == 2


def test_threshold_for_mean_f1_weights_datasets_equally():
    from retinacli.metrics import ScoreHistogram, bin_lower_edge, threshold_for_mean_f1

    rng = np.random.default_rng(0)
    # dataset A: large, positives score ~0.8; dataset B: small, positives score ~0.4; negatives ~0.1 in both
    a, b = ScoreHistogram(), ScoreHistogram()
    a.add(np.r_[rng.normal(0.8, 0.02, 5000), rng.normal(0.1, 0.02, 50000)].clip(0, 1),
          np.r_[np.ones(5000, bool), np.zeros(50000, bool)])
    b.add(np.r_[rng.normal(0.4, 0.02, 50), rng.normal(0.1, 0.02, 500)].clip(0, 1),
          np.r_[np.ones(50, bool), np.zeros(500, bool)])
    thr, f1s = threshold_for_mean_f1([a, b])
    assert 0.15 < thr < 0.35  # separates both datasets; the pooled optimum could sit anywhere up to 0.7
    assert min(f1s) > 0.99
    assert bin_lower_edge(0) == 0.0
