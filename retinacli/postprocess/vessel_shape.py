"""Vessel shape measures: ordered centrelines, tortuosity (distance factor) and fractal dimension (box counting).

Pure functions, no files. Coordinates are (row, col) input pixels; lengths in px (convert with the image's µm/px).
Rules (clinical-rules §4.4, §4.5):

Tortuosity, distance factor (Hart 1999): tau = L / chi per segment of the vessel graph (between key points).
- centreline: the shortest 8-connected path through the segment's pixels from its key pixel ``end_rc[0]`` to
  ``end_rc[1]`` (``ordered_centreline``), so staircase corners absorbed into the segment are skipped;
- L: length of that path after Gaussian smoothing of its coordinates (sigma ``smooth_sigma_px`` samples, odd
  reflection at both ends so the end points stay fixed and a straight digital line stays straight). Smoothing
  removes the staircase bias of raw 8-connected lengths (+8% on a straight line at 22.5 deg, +5.5% on a circle);
- chi: Euclidean distance between the two end key pixels;
- only segments with two different key points (no rings, no loops, chi > 0) and L >= ``min_length_px``;
- summary over those segments: median(tau) and the tortuosity index sum(L) / sum(chi) (PVBM's definitions), plus
  sum(L) and the number of segments. NaN without a qualifying segment.

Fractal dimension D0 (plain box counting, ``fd_method = "box_count_occupied"``): N(eps) = number of eps x eps boxes
holding at least one vessel pixel (NOT AutoMorph's partly-filled-only variant), on a grid anchored at the top-left of
the ROI's bounding box (the ROI is the FOV; the mask outside it is cleared); eps = powers of two from ``min_box_px``
to the largest one <= min(ROI bounding-box side) x ``max_box_fraction``; D0 = -slope of the least-squares line of
log N(eps) against log eps. NaN with fewer than 3 box sizes or an empty mask.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from retinacli.postprocess.vessel_graph import VesselGraph

FD_METHOD = "box_count_occupied"
_FORWARD = ((0, 1, 1.0), (1, 0, 1.0), (1, 1, math.sqrt(2.0)), (1, -1, math.sqrt(2.0)))


@dataclass(frozen=True)
class TortuosityConfig:
    """Which segments count and how their length is measured (px)."""

    min_length_px: float = 10.0  # shorter segments are dropped (PVBM keeps arcs > 10 px)
    smooth_sigma_px: float = 2.0  # Gaussian sigma (in path samples ~ px) applied to the centreline coordinates


@dataclass(frozen=True)
class Tortuosity:
    """Per-segment distance factors and their summary. Arrays [K] over the K qualifying segments (ascending id)."""

    segment_ids: np.ndarray  # int64
    length_px: np.ndarray  # smoothed arc length L
    chord_px: np.ndarray  # chi
    distance_factor: np.ndarray  # L / chi (dimensionless, >= 1)
    median: float  # median(L / chi); NaN when K = 0
    index: float  # sum(L) / sum(chi); NaN when K = 0
    total_length_px: float  # sum(L)


@dataclass(frozen=True)
class FractalDimension:
    """D0 by box counting with the box sizes used (px) and the counts N(eps)."""

    d0: float
    box_sizes_px: tuple[int, ...]
    counts: tuple[int, ...]
    method: str = FD_METHOD


def segment_pixel_lists(graph: VesselGraph) -> dict[int, np.ndarray]:
    """{segment id: int64 [n, 2] (row, col) of its pixels in raster order}."""
    rr, cc = np.nonzero(graph.segment_labels)
    lab = graph.segment_labels[rr, cc]
    order = np.argsort(lab, kind="stable")
    rc = np.stack([rr[order], cc[order]], axis=1).astype(np.int64)
    start = np.searchsorted(lab[order], np.arange(graph.n_segments + 2))
    return {s: rc[start[s]:start[s + 1]] for s in graph.segments}


def ordered_centreline(pixels_rc: np.ndarray, start_rc: tuple[int, int], end_rc: tuple[int, int]) -> np.ndarray | None:
    """Pixels of one segment int [n, 2] + its two end key pixels -> float64 [m, 2] (row, col) of the shortest
    8-connected path from ``start_rc`` to ``end_rc`` through them (both included); None when not connected."""
    pts = np.concatenate([np.asarray([start_rc, end_rc], np.int64), np.asarray(pixels_rc, np.int64)])
    lo = pts.min(axis=0) - 1
    grid = np.full(tuple(pts.max(axis=0) - lo + 2), -1, np.int64)
    local = pts - lo
    grid[local[:, 0], local[:, 1]] = np.arange(len(pts))  # a duplicated end pixel keeps its last index
    idx = grid[local[:, 0], local[:, 1]]
    src, dst, wts = [], [], []
    for dr, dc, w in _FORWARD:
        nb = grid[local[:, 0] + dr, local[:, 1] + dc]
        ok = nb >= 0
        src.append(idx[ok]), dst.append(nb[ok]), wts.append(np.full(int(ok.sum()), w))
    n = len(pts)
    adj = coo_matrix((np.concatenate(wts), (np.concatenate(src), np.concatenate(dst))), shape=(n, n)).tocsr()
    a, b = int(idx[0]), int(idx[1])
    dist, pred = dijkstra(adj, directed=False, indices=a, return_predecessors=True)
    if not np.isfinite(dist[b]):
        return None
    path = [b]
    while path[-1] != a:
        path.append(int(pred[path[-1]]))
    return pts[path[::-1]].astype(np.float64)


def smoothed_length(path_rc: np.ndarray, sigma: float) -> float:
    """float [m, 2] ordered points -> length (px) of the polyline after Gaussian smoothing with odd reflection at
    both ends (end points fixed, straight lines preserved); sigma <= 0: the raw polyline length."""
    p = np.asarray(path_rc, np.float64)
    if sigma > 0 and len(p) > 2:
        pad = int(math.ceil(4 * sigma))
        q = np.pad(p, ((pad, pad), (0, 0)), mode="reflect", reflect_type="odd")
        p = gaussian_filter1d(q, sigma, axis=0, mode="nearest")[pad:pad + len(p)]
    return float(np.hypot(*np.diff(p, axis=0).T).sum())


def segment_tortuosity(graph: VesselGraph, config: TortuosityConfig = TortuosityConfig()) -> Tortuosity:
    """Distance factor L / chi of every qualifying segment and the summary (module docstring)."""
    pix = segment_pixel_lists(graph)
    ids, lengths, chords = [], [], []
    for s, seg in sorted(graph.segments.items()):
        if seg.nodes[0] == seg.nodes[1] or seg.length_px < config.min_length_px:  # ring, loop, or short
            continue
        (r0, c0), (r1, c1) = seg.end_rc
        chord = math.hypot(r1 - r0, c1 - c0)
        path = ordered_centreline(pix[s], seg.end_rc[0], seg.end_rc[1]) if chord > 0 else None
        if path is None:
            continue
        length = smoothed_length(path, config.smooth_sigma_px)
        if length < config.min_length_px:
            continue
        ids.append(s), lengths.append(length), chords.append(chord)
    length_a, chord_a = np.asarray(lengths, np.float64), np.asarray(chords, np.float64)
    tau = length_a / chord_a if len(ids) else np.zeros(0)
    return Tortuosity(np.asarray(ids, np.int64), length_a, chord_a, tau,
                      float(np.median(tau)) if len(ids) else math.nan,
                      float(length_a.sum() / chord_a.sum()) if len(ids) else math.nan, float(length_a.sum()))


def box_counts(mask: np.ndarray, box_sizes_px: tuple[int, ...] | list[int]) -> np.ndarray:
    """bool [H, W] -> int64 [len(box_sizes)]: boxes of each size (grid from the top-left corner, partial boxes at the
    bottom/right edges included) that hold at least one True pixel."""
    m = np.asarray(mask, bool)
    out = []
    for e in box_sizes_px:
        h, w = -(-m.shape[0] // e) * e, -(-m.shape[1] // e) * e
        p = np.zeros((h, w), bool)
        p[:m.shape[0], :m.shape[1]] = m
        out.append(int(p.reshape(h // e, e, w // e, e).any(axis=(1, 3)).sum()))
    return np.asarray(out, np.int64)


def default_box_sizes(shape: tuple[int, int], min_box_px: int = 2, max_box_fraction: float = 0.125) -> tuple[int, ...]:
    """Powers of two from ``min_box_px`` (rounded up to a power of two) to min(shape) x ``max_box_fraction``."""
    top = min(shape) * max_box_fraction
    e = 1 << max(0, int(math.ceil(math.log2(max(min_box_px, 1)))))
    sizes = []
    while e <= top:
        sizes.append(e)
        e *= 2
    return tuple(sizes)


def fractal_dimension(mask: np.ndarray, roi: np.ndarray | None = None, min_box_px: int = 2,
                      max_box_fraction: float = 0.125) -> FractalDimension:
    """bool [H, W] vessel mask (+ optional bool [H, W] ROI, e.g. the FOV) -> D0 by occupied-box counting."""
    m = np.asarray(mask, bool)
    if roi is not None:
        roi = np.asarray(roi, bool)
        m = m & roi
        rows, cols = np.nonzero(roi)
        if len(rows) == 0:
            return FractalDimension(math.nan, (), ())
        m = m[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    sizes = default_box_sizes(m.shape, min_box_px, max_box_fraction)
    if len(sizes) < 3 or not m.any():
        return FractalDimension(math.nan, sizes, ())
    counts = box_counts(m, sizes)
    slope = np.polyfit(np.log(np.asarray(sizes, float)), np.log(counts.astype(float)), 1)[0]
    return FractalDimension(float(-slope), sizes, tuple(int(c) for c in counts))
