"""Unit tests for retinacli.postprocess.av_labels: exact votes, neighbours, propagation, painting and table."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from retinacli.postprocess.av_labels import (
    AvGraphConfig,
    crossing_groups,
    label_vessels_av,
    paint_labels,
    propagate_labels,
    segment_neighbours,
    segment_table,
    segment_votes,
)
from retinacli.postprocess.vessel_graph import VesselGraph, build_vessel_graph
from synthetic_skeletons import draw, x_skeleton, y_skeleton

A, V = 1, 2


def diamond(centre: tuple[int, int], radius: int) -> list[tuple[int, int]]:
    """Closed 8-connected ring of 4 * radius pixels."""
    r0, c0 = centre
    return [(r, c) for r in range(r0 - radius, r0 + radius + 1) for c in range(c0 - radius, c0 + radius + 1)
            if abs(r - r0) + abs(c - c0) == radius]


def probs(g: VesselGraph, per_segment: dict[int, tuple[float, float]], key=(0.0, 0.0)):
    """float32 (p_artery, p_vein) [H, W]: (pa, pv) on each listed segment's pixels, ``key`` on key-point pixels."""
    pa = np.zeros(g.segment_labels.shape, np.float32)
    pv = np.zeros_like(pa)
    pa[g.keypoint_labels > 0], pv[g.keypoint_labels > 0] = key
    for s, (a, v) in per_segment.items():
        pa[g.segment_labels == s], pv[g.segment_labels == s] = a, v
    return pa, pv


def run(g: VesselGraph, per_segment, config=AvGraphConfig()):
    votes = segment_votes(g, *probs(g, per_segment))
    labels, propagated = propagate_labels(votes.label, votes.confidence, segment_neighbours(g, config),
                                          config.min_confidence)
    return votes, labels.tolist(), propagated.tolist()


def touching_skeleton(shared_px: int = 35) -> np.ndarray:
    """Vessels A (top) and B (bottom) run together along row 5 between branchings (5, 5) and (5, 5 + shared_px).
    Segments: 1 A-left, 2 A-right, 3 shared, 4 B-left, 5 B-right."""
    e = 5 + shared_px
    return draw((11, e + 6), [(i, i) for i in range(5)] + [(10 - i, i) for i in range(5)]
                + [(5, c) for c in range(5, e + 1)] + [(5 - i, e + i) for i in range(1, 6)]
                + [(5 + i, e + i) for i in range(1, 6)])


def test_config_defaults():
    assert AvGraphConfig() == AvGraphConfig(min_confidence=0.3, crossing_max_turn_deg=45.0, direction_radius_px=15.0,
                                            crossing_merge_px=25.0)


def test_votes_sum_segment_pixels_only():
    g = build_vessel_graph(y_skeleton())  # segments: 1 left arm (7 px), 2 right arm (7 px), 3 stem (9 px)
    votes = segment_votes(g, *probs(g, {1: (0.75, 0.25), 2: (0.25, 0.5), 3: (0.5, 0.5)}, key=(0.0, 1.0)))
    assert votes.artery_sum.tolist() == [0.0, 5.25, 1.75, 4.5]
    assert votes.vein_sum.tolist() == [0.0, 1.75, 3.5, 4.5]  # key pixels (p_vein 1) do not vote
    assert votes.label.tolist() == [0, A, V, A]  # exact tie votes artery ...
    assert votes.confidence.tolist() == [0.0, 0.5, pytest.approx(1 / 3), 0.0]  # ... with confidence 0


def test_no_evidence_votes_artery_with_zero_confidence():
    g = build_vessel_graph(y_skeleton())
    votes = segment_votes(g, *probs(g, {}))
    assert votes.label.tolist() == [0, A, A, A] and votes.confidence.tolist() == [0.0] * 4


def test_y_branching_passes_labels_between_all_its_segments():
    g = build_vessel_graph(y_skeleton())
    assert segment_neighbours(g) == {1: {2, 3}, 2: {1, 3}, 3: {1, 2}}
    votes, labels, propagated = run(g, {1: (0.75, 0.25), 2: (0.45, 0.55), 3: (0.9, 0.1)})
    assert votes.label.tolist() == [0, A, V, A] and votes.confidence[2] == pytest.approx(0.1)
    assert labels == [0, A, A, A] and propagated == [False, False, True, False]


def test_confident_segments_are_never_relabelled():
    g = build_vessel_graph(y_skeleton())
    _, labels, propagated = run(g, {1: (0.9, 0.1), 2: (0.1, 0.9), 3: (0.9, 0.1)})
    assert labels == [0, A, V, A] and not any(propagated)


def test_x_crossing_takes_the_collinear_partner_not_the_crossing_vessel():
    g = build_vessel_graph(x_skeleton())  # 1 top, 2 left, 3 right, 4 bottom
    assert segment_neighbours(g) == {1: {4}, 2: {3}, 3: {2}, 4: {1}}
    votes, labels, propagated = run(g, {1: (0.1, 0.9), 2: (0.9, 0.1), 3: (0.45, 0.55), 4: (0.55, 0.45)})
    assert votes.label.tolist() == [0, V, A, V, A]
    assert labels == [0, V, A, A, V] and propagated == [False, False, False, True, True]


def test_crossing_turn_threshold():
    # the right arm leaves the crossing diagonally up-right: measured turn from the left arm ~39 deg (45 drawn)
    sk = x_skeleton()
    sk[10, 12:] = False
    for i in range(1, 9):
        sk[10 - i, 11 + i] = True
    g = build_vessel_graph(sk)
    assert [k.kind for k in g.keypoints.values()].count("crossing") == 1
    right = next(s for s, seg in g.segments.items() if seg.end_rc[1] == (2, 19) or seg.end_rc[0] == (2, 19))
    left = next(s for s, seg in g.segments.items() if (10, 0) in seg.end_rc)
    assert right in segment_neighbours(g, AvGraphConfig(crossing_max_turn_deg=60.0))[left]
    assert segment_neighbours(g, AvGraphConfig(crossing_max_turn_deg=30.0))[left] == frozenset()
    top = next(s for s, seg in g.segments.items() if (0, 10) in seg.end_rc)
    bottom = next(s for s, seg in g.segments.items() if (20, 10) in seg.end_rc)
    assert segment_neighbours(g, AvGraphConfig(crossing_max_turn_deg=30.0))[top] == {bottom}


def split_crossing_skeleton() -> np.ndarray:
    """Row 10 (cols 0..30) crossed by a vessel that meets it at column 14 from above and leaves at column 20 below:
    branchings (9.75, 14) and (10.25, 20) joined by a 3-pixel bridge (10, 16..18) of length 4.
    Segments: 1 top, 2 left, 3 bridge, 4 right, 5 bottom. Key points: 1 top end, 2 upper branching, 3 left end,
    4 lower branching, 5 right end, 6 bottom end."""
    return draw((21, 31), [(10, c) for c in range(31)] + [(r, 14) for r in range(10)]
                + [(r, 20) for r in range(11, 21)])


def test_crossing_drawn_as_two_branchings_is_merged_into_one_crossing():
    g = build_vessel_graph(split_crossing_skeleton())
    assert [(k.kind, k.centroid_rc) for k in g.keypoints.values()] == [
        ("end", (0.0, 14.0)), ("branching", (9.75, 14.0)), ("end", (10.0, 0.0)), ("branching", (10.25, 20.0)),
        ("end", (10.0, 30.0)), ("end", (20.0, 20.0))]
    assert g.segments[3].nodes == (2, 4) and g.segments[3].length_px == 4.0
    assert crossing_groups(g, 10.0) == {1: 1, 2: 2, 3: 3, 4: 2, 5: 5, 6: 6}
    assert crossing_groups(g, 3.9) == {k: k for k in range(1, 7)}
    merged = segment_neighbours(g)
    assert merged == {1: {5}, 2: {4}, 3: set(), 4: {2}, 5: {1}}
    assert segment_neighbours(g, AvGraphConfig(crossing_merge_px=0.0)) == {
        1: {2, 3}, 2: {1, 3}, 3: {1, 2, 4, 5}, 4: {3, 5}, 5: {3, 4}}
    # artery along row 10 (right arm weak), vein top to bottom (bottom arm weak), bridge: mixed
    per_segment = {1: (0.1, 0.9), 2: (0.9, 0.1), 3: (0.5, 0.5), 4: (0.45, 0.55), 5: (0.55, 0.45)}
    _, labels, propagated = run(g, per_segment)
    assert labels == [0, V, A, A, A, V] and propagated == [False, False, False, False, True, True]


def test_touching_vessels_shared_stretch_with_a_tie_keeps_its_own_vote():
    g = build_vessel_graph(touching_skeleton())
    assert segment_neighbours(g) == {1: {3, 4}, 2: {3, 5}, 3: {1, 2, 4, 5}, 4: {1, 3}, 5: {2, 3}}
    # known limit: a shared stretch no longer than crossing_merge_px reads as a crossing (A-left goes on as B-right)
    short = build_vessel_graph(touching_skeleton(shared_px=10))
    assert segment_neighbours(short) == {1: {5}, 2: {4}, 3: set(), 4: {2}, 5: {1}}
    _, labels, propagated = run(g, {1: (0.9, 0.1), 2: (0.9, 0.1), 3: (0.45, 0.55), 4: (0.1, 0.9), 5: (0.1, 0.9)})
    assert labels == [0, A, A, V, V, V] and propagated == [False, False, False, True, False, False]


def test_touching_vessels_one_round_decides_from_the_settled_set_before_it():
    g = build_vessel_graph(touching_skeleton())
    # 3 and 5 are weak: in round 1 the shared 3 sees A, A, V (-> A); 5 sees only the settled 2 (A), not 3
    _, labels, propagated = run(g, {1: (0.9, 0.1), 2: (0.9, 0.1), 3: (0.45, 0.55), 4: (0.1, 0.9), 5: (0.45, 0.55)})
    assert labels == [0, A, A, A, V, A] and propagated == [False, False, False, True, False, True]


def test_propagation_runs_in_rounds_and_does_not_depend_on_order():
    vote = np.array([0, A, A, A, V, V, A], np.uint8)
    conf = np.array([0, 0.9, 0.1, 0.0, 0.1, 0.9, 0.0])  # 6 is alone and unsettled
    chain = {1: {2}, 2: {1, 3}, 3: {2, 4}, 4: {3, 5}, 5: {4}, 6: set()}
    forward = {s: frozenset(n) for s, n in chain.items()}
    backward = {s: frozenset(chain[s]) for s in reversed(list(chain))}
    for nbrs in (forward, backward):
        labels, propagated = propagate_labels(vote, conf, nbrs, 0.3)
        # round 1: 2 <- 1 (A), 4 <- 5 (V); round 2: 3 sees A and V, a tie: keeps its vote A; 6 is never reached
        assert labels.tolist() == [0, A, A, A, V, V, A]
        assert propagated.tolist() == [False, False, True, True, True, False, False]
    labels, _ = propagate_labels(np.array([0, A, V, V, V], np.uint8), np.array([0, 0.9, 0.0, 0.0, 0.0]),
                                 {1: frozenset({2}), 2: frozenset({1, 3}), 3: frozenset({2, 4}), 4: frozenset({3})},
                                 0.3)
    assert labels.tolist() == [0, A, A, A, A]  # a chain of weak segments follows the confident one, round by round


def test_ring_and_isolated_dot_keep_their_own_votes_and_paint_their_own_pixels():
    sk = draw((25, 25), diamond((10, 10), 5) + [(22, 22)])
    g = build_vessel_graph(sk)
    assert len(g.segments) == 2 and segment_neighbours(g) == {1: frozenset(), 2: frozenset()}
    votes, labels, propagated = run(g, {1: (0.45, 0.55), 2: (0.6, 0.4)})
    assert labels == [0, V, A] and propagated == [False, False, False]
    mask = cv2.dilate(sk.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    out = paint_labels(g.segment_labels, np.array(labels, np.uint8), mask)
    dot = np.zeros_like(mask)
    dot[21:24, 21:24] = True
    assert (out[dot] == A).all() and (out[mask & ~dot] == V).all() and (out[~mask] == 0).all()


def test_paint_takes_the_nearest_segment():
    sk = np.zeros((11, 20), bool)
    sk[2, :] = sk[8, :] = True
    g = build_vessel_graph(sk)  # segment 1: row 2 (cols 1..18), segment 2: row 8
    mask = np.zeros_like(sk)
    mask[0:5, :] = mask[6:11, :] = True
    out = paint_labels(g.segment_labels, np.array([0, A, V], np.uint8), mask)
    assert (out[0:5] == A).all() and (out[6:11] == V).all() and (out[5] == 0).all()


def test_segment_table():
    sk = np.zeros((11, 24), bool)
    sk[5, 2:18] = True
    mask = np.zeros_like(sk)
    mask[3:8, 1:23] = True  # 5 px wide band around row 5: distance 3 to the background on the centreline
    g = build_vessel_graph(sk)
    votes = segment_votes(g, *probs(g, {1: (0.5, 0.25)}))
    t = segment_table(g, votes, np.array([0, A], np.uint8), np.array([False, False]), mask)
    assert {k: v.tolist() for k, v in t.items()} == {
        "segment_id": [1], "label": [A], "vote_label": [A], "propagated": [False],
        "confidence": [pytest.approx(1 / 3)], "artery_sum": [7.0], "vein_sum": [3.5], "n_pixels": [14],
        "length_px": [15.0], "mean_width_px": [6.0], "node1": [1], "node2": [2],
        "end1_row": [5], "end1_col": [2], "end2_row": [5], "end2_col": [17]}


def test_empty_mask():
    res = label_vessels_av(np.zeros((40, 50), bool), np.zeros((40, 50), np.float32), np.zeros((40, 50), np.float32))
    assert res.label_map.dtype == np.uint8 and res.label_map.shape == (40, 50) and res.label_map.max() == 0
    assert res.graph.n_segments == 0 and all(len(col) == 0 for col in res.table.values())
    assert set(res.table) >= {"segment_id", "label", "confidence", "length_px", "mean_width_px", "end1_row"}


def test_drawn_crossing_end_to_end():
    """A thick artery (row 60) crossed by a vein (column 80); the artery's right half has weak, wrong evidence."""
    artery = np.zeros((120, 160), np.uint8)
    vein = np.zeros_like(artery)
    cv2.line(artery, (5, 60), (155, 60), 1, 5)
    cv2.line(vein, (80, 5), (80, 115), 1, 3)
    mask = (artery | vein).astype(bool)
    pa = np.where(artery > 0, 0.9, 0.1).astype(np.float32)
    pa[vein > 0] = 0.1
    pa[(artery > 0) & (vein == 0) & (np.arange(160) > 90)] = 0.45  # right half of the artery: weak vein vote
    pv = np.where(mask, 1.0 - pa, 0.0).astype(np.float32)
    res = label_vessels_av(mask, pa, pv)
    far = np.ones_like(mask)
    far[50:71, 70:91] = False  # leave out the crossing itself
    truth = np.where(vein > 0, V, np.where(artery > 0, A, 0))
    assert np.array_equal(res.label_map[far], truth[far])
    assert res.label_map.dtype == np.uint8 and set(np.unique(res.label_map)) == {0, A, V}
