"""Vessel mask -> skeleton graph: key points (end points, branchings, crossings) and segments between them.

Pure functions, no files. 8-connectivity throughout; coordinates are (row, col) pixels of the input image.

- skeleton: ``skimage.morphology.skeletonize`` of the vessel mask (one pixel wide, 8-connected).
- neighbours of a skeleton pixel: how many of its 8 neighbours are skeleton (a 3x3 convolution).
- key pixel: a skeleton pixel with > 2 neighbours (junction pixel) or <= 1 neighbour (end pixel, isolated dot).
- cluster: an 8-connected group of key pixels (the junction pixels of one crossing form ONE cluster).
- segment: an 8-connected group of skeleton pixels that are not key pixels. Each such pixel has exactly two skeleton
  neighbours, so a segment is a simple path whose two ends each touch one cluster (the same one for a loop), or a
  closed ring touching none.
- degree of a cluster: the number of segment ends touching it (a loop counts twice).
- clusters of degree 2 (pass-through: staircase corners of the skeleton, a junction with a one-pixel spur) and of
  degree 0 (a whole skeleton component made of key pixels: an isolated dot, a two-pixel stub) are NOT key points:
  their pixels go to the segments (a pass-through joins its two segments into one; a degree-0 cluster becomes a
  segment of its own with no ends, like a ring). This leaves the degree of every other cluster unchanged.
- key points = the remaining clusters: kind "end" (degree 1), "branching" (degree 3) or "crossing" (degree >= 4).
- graph: ``networkx.MultiGraph``, nodes = key-point ids (attributes kind, degree, centroid_rc), one edge per segment
  between its two key points with key = segment id. Rings and isolated pieces (no ends) are segments, not edges.
- length_px of a segment: polyline length from key pixel to key pixel through its pixels (axial step 1, diagonal
  step sqrt 2, a diagonal step whose L-corner pixel is skeleton is not counted); a ring: its closed length; a dot: 0.
- ids: key points 1..K and segments 1..S, numbered in raster order of their first pixel; 0 means "none".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import networkx as nx
import numpy as np
from skimage.morphology import skeletonize

OFFSETS8 = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
_FORWARD = ((0, 1), (1, 0), (1, 1), (1, -1))  # each unordered pixel pair once
_RING3 = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.float32)


@dataclass(frozen=True)
class KeyPoint:
    """A graph node: one cluster of key pixels. ``centroid_rc``: mean (row, col) of its pixels."""

    id: int
    kind: str  # "end" | "branching" | "crossing"
    degree: int
    n_pixels: int
    centroid_rc: tuple[float, float]


@dataclass(frozen=True)
class Segment:
    """Skeleton pixels between key points (a graph edge), or a ring / isolated piece (no edge).

    ``nodes``: key-point ids at its two ends, ascending (equal for a loop, (0, 0) without ends).
    ``end_rc[i]``: the key pixel that end i touches (row, col); without ends: first and last pixel in raster order.
    """

    id: int
    nodes: tuple[int, int]
    n_pixels: int
    length_px: float
    end_rc: tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class VesselGraph:
    """Skeleton graph of one vessel mask. Label images are int32 [H, W] with 0 = none."""

    skeleton: np.ndarray  # bool [H, W]
    keypoint_labels: np.ndarray  # int32 [H, W]: k on the pixels of key point k
    segment_labels: np.ndarray  # int32 [H, W]: s on the pixels of segment s
    keypoints: dict[int, KeyPoint]
    segments: dict[int, Segment]
    graph: nx.MultiGraph

    @property
    def n_segments(self) -> int:
        return len(self.segments)


def skeletonize_mask(mask: np.ndarray) -> np.ndarray:
    """bool [H, W] vessel mask -> bool [H, W] one-pixel-wide 8-connected skeleton (skimage, Zhang's method)."""
    return skeletonize(np.asarray(mask, dtype=bool))


def count_neighbours(skeleton: np.ndarray) -> np.ndarray:
    """bool [H, W] skeleton -> uint8 [H, W]: skeleton pixels among the 8 neighbours (3x3 convolution); 0 off it."""
    sk = np.ascontiguousarray(skeleton, dtype=bool)
    n = cv2.filter2D(sk.view(np.uint8), -1, _RING3, borderType=cv2.BORDER_CONSTANT)
    n[~sk] = 0
    return n


def _label8(binary: np.ndarray) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """bool [H, W] -> (int32 [H, W] 8-connected component ids 1..n in raster order of first pixel, n, rows, cols of
    the True pixels in raster order). OpenCV labelling (several times faster than scipy here), renumbered."""
    n, lab = cv2.connectedComponents(binary.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    rr, cc = np.nonzero(binary)
    old = lab[rr, cc]
    firsts = np.unique(old, return_index=True)[1]  # first pixel of each old id (ids 1..n-1, sorted)
    rank = np.empty(n, np.int32)
    rank[0] = 0
    rank[1 + np.argsort(np.argsort(firsts))] = np.arange(1, n, dtype=np.int32)
    lab[rr, cc] = rank[old]
    return lab, n - 1, rr, cc


def _links(seg_lab: np.ndarray, kp_lab: np.ndarray, rr: np.ndarray, cc: np.ndarray) -> np.ndarray:
    """Every (segment pixel, neighbouring key pixel) pair as int64 rows
    [segment id, cluster id, segment-pixel index into rr, key row, key col], sorted by segment, cluster, pixel."""
    s = seg_lab[rr, cc]
    parts = []
    for dr, dc in OFFSETS8:
        k = kp_lab[rr + dr, cc + dc]
        hit = np.flatnonzero(k)
        parts.append(np.stack([s[hit], k[hit], hit, rr[hit] + dr, cc[hit] + dc], axis=1).astype(np.int64))
    links = np.concatenate(parts) if parts else np.zeros((0, 5), np.int64)
    return links[np.lexsort((links[:, 2], links[:, 1], links[:, 0]))]


def _pairs(links: np.ndarray, n_seg: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique (segment, cluster) pairs -> (row index of each pair's first link, clusters touched per segment [S+1])."""
    if len(links) == 0:
        return np.zeros(0, np.int64), np.zeros(n_seg + 1, np.int64)
    new = np.ones(len(links), bool)
    new[1:] = (links[1:, 0] != links[:-1, 0]) | (links[1:, 1] != links[:-1, 1])
    first = np.flatnonzero(new)
    return first, np.bincount(links[first, 0], minlength=n_seg + 1)


def _segment_lengths(sk: np.ndarray, seg_lab: np.ndarray, key: np.ndarray, n_seg: int) -> np.ndarray:
    """float64 [S+1] polyline length (px) of each segment including the steps onto its key pixels."""
    sr, sc = np.nonzero(sk)
    s_p, k_p = seg_lab[sr, sc], key[sr, sc]
    total = np.zeros(n_seg + 1)
    for dr, dc in _FORWARD:
        qr, qc = sr + dr, sc + dc
        s_q, k_q = seg_lab[qr, qc], key[qr, qc]
        owner = np.where((s_p > 0) & ((s_q == s_p) | k_q), s_p, np.where((s_q > 0) & k_p, s_q, 0))
        ok = owner > 0
        step = 1.0
        if dr and dc:  # diagonal: skip when the path goes round the L corner instead
            ok &= ~(sk[sr, sc + dc] | sk[sr + dr, sc])
            step = math.sqrt(2.0)
        total += np.bincount(owner[ok], minlength=n_seg + 1) * step
    total[0] = 0.0
    return total


def build_vessel_graph(skeleton: np.ndarray) -> VesselGraph:
    """bool [H, W] skeleton (one pixel wide, 8-connected) -> VesselGraph (rules in the module docstring)."""
    sk = np.pad(np.asarray(skeleton, dtype=bool), 1)  # padded frame: every neighbour lookup stays inside
    nb = count_neighbours(sk)
    key = sk & ((nb > 2) | (nb <= 1))
    kp_lab, n_k, kr, kc = _label8(key)
    seg_lab, n_s, rr, cc = _label8(sk & ~key)
    links = _links(seg_lab, kp_lab, rr, cc)
    first, n_touch = _pairs(links, n_s)
    loop = n_touch[links[first, 0]] == 1  # a path touching one cluster touches it with both ends
    degree = np.bincount(links[first, 1], weights=np.where(loop, 2, 1), minlength=n_k + 1).astype(np.int64)
    keep = (degree == 1) | (degree >= 3)
    keep[0] = False
    if not keep[1:].all():  # hand degree-0 and degree-2 clusters to the segments, renumber the rest
        old = kp_lab[kr, kc]
        key[kr[~keep[old]], kc[~keep[old]]] = False
        new_id = (np.cumsum(keep) * keep).astype(np.int32)
        kp_lab[kr, kc] = new_id[old]
        kr, kc = kr[keep[old]], kc[keep[old]]
        degree = np.concatenate([[0], degree[keep]])
        n_k = len(degree) - 1
        seg_lab, n_s, rr, cc = _label8(sk & ~key)
        links = _links(seg_lab, kp_lab, rr, cc)
        first, n_touch = _pairs(links, n_s)

    s_of_pix = seg_lab[rr, cc]
    n_pix = np.bincount(s_of_pix, minlength=n_s + 1)
    ids, first_pix = np.unique(s_of_pix, return_index=True)
    last_pix = len(s_of_pix) - 1 - np.unique(s_of_pix[::-1], return_index=True)[1]
    lengths = _segment_lengths(sk, seg_lab, key, n_s)
    pair_start = np.searchsorted(links[first, 0], np.arange(n_s + 2)) if len(first) else np.zeros(n_s + 2, int)

    segments: dict[int, Segment] = {}
    for s in range(1, n_s + 1):
        rows = first[pair_start[s]:pair_start[s + 1]]
        if len(rows) == 0:  # ring or isolated piece
            a, b = first_pix[s - 1], last_pix[s - 1]
            nodes, ends = (0, 0), ((rr[a] - 1, cc[a] - 1), (rr[b] - 1, cc[b] - 1))
        else:
            if len(rows) == 1:  # loop: first and last link of the same pair are its two ends
                k = links[rows[0], 1]
                stop = rows[0] + 1
                while stop < len(links) and links[stop, 0] == s and links[stop, 1] == k:
                    stop += 1
                picked = (rows[0], stop - 1)
            else:  # two clusters (a path cannot touch more: its inner pixels have no key neighbour)
                picked = (rows[0], rows[1])
            nodes = (int(links[picked[0], 1]), int(links[picked[1], 1]))
            ends = tuple((int(links[i, 3]) - 1, int(links[i, 4]) - 1) for i in picked)
        segments[s] = Segment(s, nodes, int(n_pix[s]), float(lengths[s]),
                              tuple((int(r), int(c)) for r, c in ends))

    k_of_pix = kp_lab[kr, kc]
    k_pix = np.bincount(k_of_pix, minlength=n_k + 1)
    k_r = np.bincount(k_of_pix, weights=kr, minlength=n_k + 1) / np.maximum(k_pix, 1) - 1
    k_c = np.bincount(k_of_pix, weights=kc, minlength=n_k + 1) / np.maximum(k_pix, 1) - 1
    keypoints: dict[int, KeyPoint] = {}
    graph = nx.MultiGraph()
    for k in range(1, n_k + 1):
        d = int(degree[k])
        kind = "end" if d == 1 else "branching" if d == 3 else "crossing"
        keypoints[k] = KeyPoint(k, kind, d, int(k_pix[k]), (float(k_r[k]), float(k_c[k])))
        graph.add_node(k, kind=kind, degree=d, centroid_rc=keypoints[k].centroid_rc)
    for seg in segments.values():
        if seg.nodes != (0, 0):
            graph.add_edge(seg.nodes[0], seg.nodes[1], key=seg.id, length_px=seg.length_px)
    inner = (slice(1, -1), slice(1, -1))
    return VesselGraph(sk[inner], kp_lab[inner], seg_lab[inner].astype(np.int32, copy=False),
                       keypoints, segments, graph)


def mask_to_vessel_graph(mask: np.ndarray) -> VesselGraph:
    """bool [H, W] vessel mask -> VesselGraph of its skeleton."""
    return build_vessel_graph(skeletonize_mask(mask))


def end_directions(graph: VesselGraph, ends: list[tuple[int, int]], radius_px: float,
                   centres: dict[int, tuple[float, float]] | None = None) -> dict[tuple[int, int], np.ndarray | None]:
    """Unit (drow, dcol) vector from a key point into a segment, for each (segment id, end index 0|1) in ``ends``.

    Direction = mean of the segment's pixels within ``radius_px`` of its key pixel ``end_rc[i]`` (all its pixels if
    none is that close) minus the centroid of the key point ``nodes[i]`` (or ``centres[nodes[i]]`` where given);
    None when that vector is zero.
    """
    out: dict[tuple[int, int], np.ndarray | None] = {}
    if not ends:
        return out
    rr, cc = np.nonzero(graph.segment_labels)
    lab = graph.segment_labels[rr, cc]
    order = np.argsort(lab, kind="stable")
    rr, cc, lab = rr[order].astype(float), cc[order].astype(float), lab[order]
    start = np.searchsorted(lab, np.arange(graph.n_segments + 2))
    for s, i in ends:
        seg = graph.segments[s]
        pr, pc = rr[start[s]:start[s + 1]], cc[start[s]:start[s + 1]]
        er, ec = seg.end_rc[i]
        near = (pr - er) ** 2 + (pc - ec) ** 2 <= radius_px ** 2
        if not near.any():
            near[:] = True
        k = seg.nodes[i]
        cr, cc0 = centres[k] if centres and k in centres else graph.keypoints[k].centroid_rc
        v = np.array([pr[near].mean() - cr, pc[near].mean() - cc0])
        n = float(np.hypot(v[0], v[1]))
        out[(s, i)] = v / n if n > 1e-9 else None
    return out


def group_keypoints(graph: VesselGraph, joins) -> dict[int, int]:
    """{key-point id: group id}: key points linked by a segment for which ``joins(segment)`` is True fall into one
    group (union-find over the graph's segments); group id = smallest member id; the rest are their own group."""
    parent = {k: k for k in graph.keypoints}

    def root(k: int) -> int:
        while parent[k] != k:
            k = parent[k]
        return k

    for seg in graph.segments.values():
        a, b = seg.nodes
        if a and a != b and joins(seg):
            ra, rb = root(a), root(b)
            parent[max(ra, rb)] = min(ra, rb)
    return {k: root(k) for k in graph.keypoints}
