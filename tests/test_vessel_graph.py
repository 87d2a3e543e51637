"""Unit tests for retinacli.postprocess.vessel_graph on hand-drawn skeletons (exact key points and segments)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from retinacli.postprocess.vessel_graph import (
    KeyPoint,
    Segment,
    build_vessel_graph,
    count_neighbours,
    end_directions,
    mask_to_vessel_graph,
)
from synthetic_skeletons import draw, x_skeleton, y_skeleton

R2 = math.sqrt(2.0)


def diamond(centre=(10, 10), radius=5) -> list[tuple[int, int]]:
    """Closed 8-connected ring of 4 * radius pixels, all diagonal steps."""
    r0, c0 = centre
    return [(r, c) for r in range(r0 - radius, r0 + radius + 1) for c in range(c0 - radius, c0 + radius + 1)
            if abs(r - r0) + abs(c - c0) == radius]


def pixels_of(labels: np.ndarray, i: int) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(labels == i))}


def test_count_neighbours_is_a_3x3_count_on_the_skeleton():
    n = count_neighbours(y_skeleton())
    assert n[10, 10] == 3 and n[2, 2] == 1 and n[20, 10] == 1 and n[5, 5] == 2 and n[15, 10] == 2
    assert n[0, 0] == 0 and n[10, 9] == 0  # off the skeleton: 0 even next to it
    assert count_neighbours(np.ones((3, 3), bool))[1, 1] == 8


def test_y_branching():
    g = build_vessel_graph(y_skeleton())
    assert g.keypoints == {
        1: KeyPoint(1, "end", 1, 1, (2.0, 2.0)),
        2: KeyPoint(2, "end", 1, 1, (2.0, 18.0)),
        3: KeyPoint(3, "branching", 3, 1, (10.0, 10.0)),
        4: KeyPoint(4, "end", 1, 1, (20.0, 10.0)),
    }
    assert g.segments == {
        1: Segment(1, (1, 3), 7, pytest.approx(8 * R2), ((2, 2), (10, 10))),
        2: Segment(2, (2, 3), 7, pytest.approx(8 * R2), ((2, 18), (10, 10))),
        3: Segment(3, (3, 4), 9, 10.0, ((10, 10), (20, 10))),
    }
    assert pixels_of(g.segment_labels, 1) == {(10 - i, 10 - i) for i in range(1, 8)}
    assert pixels_of(g.segment_labels, 3) == {(r, 10) for r in range(11, 20)}
    assert pixels_of(g.keypoint_labels, 3) == {(10, 10)}
    assert sorted(g.graph.edges(keys=True)) == [(1, 3, 1), (2, 3, 2), (3, 4, 3)]
    assert dict(g.graph.degree) == {1: 1, 2: 1, 3: 3, 4: 1}


def test_x_crossing_junction_pixels_merge_into_one_key_point():
    g = build_vessel_graph(x_skeleton())
    assert [(k.kind, k.degree, k.n_pixels, k.centroid_rc) for k in g.keypoints.values()] == [
        ("end", 1, 1, (0.0, 10.0)), ("crossing", 4, 5, (10.0, 10.0)), ("end", 1, 1, (10.0, 0.0)),
        ("end", 1, 1, (10.0, 20.0)), ("end", 1, 1, (20.0, 10.0))]
    assert pixels_of(g.keypoint_labels, 2) == {(10, 10), (9, 10), (11, 10), (10, 9), (10, 11)}
    assert g.segments == {
        1: Segment(1, (1, 2), 8, 9.0, ((0, 10), (9, 10))),  # top arm
        2: Segment(2, (2, 3), 8, 9.0, ((10, 9), (10, 0))),  # left arm
        3: Segment(3, (2, 4), 8, 9.0, ((10, 11), (10, 20))),  # right arm
        4: Segment(4, (2, 5), 8, 9.0, ((11, 10), (20, 10))),  # bottom arm
    }
    d = end_directions(g, [(1, 1), (2, 0), (3, 0), (4, 0)], radius_px=5.0)
    assert np.allclose(d[(1, 1)], [-1, 0]) and np.allclose(d[(2, 0)], [0, -1])
    assert np.allclose(d[(3, 0)], [0, 1]) and np.allclose(d[(4, 0)], [1, 0])


def test_ring_is_one_segment_without_key_points():
    g = build_vessel_graph(draw((21, 21), diamond()))
    assert g.keypoints == {} and g.graph.number_of_nodes() == 0 and g.graph.number_of_edges() == 0
    assert g.segments == {1: Segment(1, (0, 0), 20, pytest.approx(20 * R2), ((5, 10), (15, 10)))}


def test_ring_with_a_tail_is_a_loop_on_a_branching():
    g = build_vessel_graph(draw((23, 21), diamond() + [(r, 10) for r in range(16, 21)]))
    assert [(k.kind, k.degree, k.centroid_rc) for k in g.keypoints.values()] == [
        ("branching", 3, (15.0, 10.0)), ("end", 1, (20.0, 10.0))]
    loop, tail = g.segments[1], g.segments[2]
    assert loop.nodes == (1, 1) and loop.n_pixels == 19 and loop.length_px == pytest.approx(20 * R2)
    assert sorted(loop.end_rc) == [(15, 10), (15, 10)]
    assert tail == Segment(2, (1, 2), 4, 5.0, ((15, 10), (20, 10)))
    assert g.graph.degree(1) == 3


def test_two_touching_vessels_share_a_segment_between_two_branchings():
    # vessel A: (0,0) -> (5,5) -> along row 5 -> (5,15) -> (0,20); vessel B: (10,0) -> (5,5) ... (5,15) -> (10,20)
    left_a = [(i, i) for i in range(0, 5)]
    left_b = [(10 - i, i) for i in range(0, 5)]
    shared = [(5, c) for c in range(5, 16)]
    right_a = [(5 - i, 15 + i) for i in range(1, 6)]
    right_b = [(5 + i, 15 + i) for i in range(1, 6)]
    g = build_vessel_graph(draw((11, 21), left_a + left_b + shared + right_a + right_b))
    assert [(k.kind, k.centroid_rc) for k in g.keypoints.values()] == [
        ("end", (0.0, 0.0)), ("end", (0.0, 20.0)), ("branching", (5.0, 5.0)), ("branching", (5.0, 15.0)),
        ("end", (10.0, 0.0)), ("end", (10.0, 20.0))]
    assert {s: (seg.nodes, seg.n_pixels) for s, seg in g.segments.items()} == {
        1: ((1, 3), 4), 2: ((2, 4), 4), 3: ((3, 4), 9), 4: ((3, 5), 4), 5: ((4, 6), 4)}
    assert g.segments[3].length_px == 10.0 and g.segments[3].end_rc == ((5, 5), (5, 15))
    assert g.segments[1].length_px == pytest.approx(5 * R2)


def test_isolated_dot_and_two_pixel_stub_are_segments_without_ends():
    g = build_vessel_graph(draw((9, 9), [(3, 4), (7, 1), (7, 2)]))
    assert g.keypoints == {} and g.graph.number_of_nodes() == 0
    assert g.segments == {1: Segment(1, (0, 0), 1, 0.0, ((3, 4), (3, 4))),
                          2: Segment(2, (0, 0), 2, 1.0, ((7, 1), (7, 2)))}
    assert g.keypoint_labels.max() == 0


def test_empty_mask():
    g = mask_to_vessel_graph(np.zeros((30, 40), bool))
    assert g.keypoints == {} and g.segments == {} and g.n_segments == 0
    assert g.graph.number_of_nodes() == 0
    assert g.segment_labels.shape == (30, 40) and g.segment_labels.max() == 0 and not g.skeleton.any()


def test_staircase_corner_is_dissolved_into_one_segment():
    # column 0 rows 0..4, a side step at (4, 1), column 1 rows 5..9: four pixels around the step count 3 neighbours
    sk = draw((10, 2), [(r, 0) for r in range(5)] + [(4, 1)] + [(r, 1) for r in range(5, 10)])
    assert count_neighbours(sk)[[3, 4, 4, 5], [0, 0, 1, 1]].tolist() == [3, 3, 3, 3]
    g = build_vessel_graph(sk)
    assert [(k.kind, k.centroid_rc) for k in g.keypoints.values()] == [("end", (0.0, 0.0)), ("end", (9.0, 1.0))]
    assert g.segments == {1: Segment(1, (1, 2), 9, 10.0, ((0, 0), (9, 1)))}


def test_skeleton_at_the_image_border():
    sk = np.zeros((5, 7), bool)
    sk[0, :] = True
    g = build_vessel_graph(sk)
    assert [k.centroid_rc for k in g.keypoints.values()] == [(0.0, 0.0), (0.0, 6.0)]
    assert g.segments == {1: Segment(1, (1, 2), 5, 6.0, ((0, 0), (0, 6)))}


def test_drawn_mask_partitions_the_skeleton_consistently():
    mask = np.zeros((120, 160), np.uint8)
    cv2.line(mask, (10, 60), (150, 60), 1, 5)
    cv2.line(mask, (80, 5), (80, 115), 1, 3)
    cv2.line(mask, (80, 60), (140, 10), 1, 3)
    g = mask_to_vessel_graph(mask.astype(bool))
    seg, key = g.segment_labels > 0, g.keypoint_labels > 0
    assert not (seg & key).any() and np.array_equal(seg | key, g.skeleton)
    assert all(g.graph.degree(k) == kp.degree and kp.degree != 2 for k, kp in g.keypoints.items())
    assert sum(kp.degree for kp in g.keypoints.values()) == 2 * g.graph.number_of_edges()
    assert sum(kp.kind == "end" for kp in g.keypoints.values()) >= 5
    assert all(np.count_nonzero(g.segment_labels == s) == seg_.n_pixels for s, seg_ in g.segments.items())
