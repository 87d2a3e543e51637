"""Vessel calibre (width) measured perpendicular to the centreline, per centreline pixel and per segment.

Pure functions, no files. Coordinates are (row, col) indices of the input image; lengths are input pixels (px).
Measure at the input's own resolution, never after downscaling (clinical-rules §4.3: a mask width moves ~±1 px with
the threshold).

Method, for one centreline pixel p = (row, col):
1. Direction: principal axis (PCA) of the centreline pixels of the same segment within ``direction_radius_px`` of p
   (Euclidean, p included). The normal n is the unit vector perpendicular to it. Fewer than 3 such pixels (an
   isolated dot, a two-pixel stub): no direction, width NaN.
2. Profile: the vessel map (a bool mask, or a probability map in [0, 1]) is sampled by bilinear interpolation
   (pixel centres at integer indices; outside the image = 0) at p + t n for t = 0, step, 2 step, ... up to
   ``max_half_width_px`` on both sides.
3. Edges: on each side the first sample below ``level`` ends the vessel; the edge is the linear interpolation between
   that sample and the one before it (sub-pixel). width = t_edge(+n) + t_edge(-n), in px.
   With a binary mask and level 0.5 a bar of k pixels measured along its axis gives exactly k (each edge sits half way
   between the last vessel pixel centre and the first background pixel centre, i.e. on the pixel boundary).
4. NaN when p itself is below ``level`` (the centreline leaves the vessel map) or an edge is not reached within
   ``max_half_width_px`` (a vessel wider than 2 x max_half_width_px, or a profile running along a vessel).

Per segment: the MEDIAN of the valid per-pixel widths (robust to the few profiles near a branching or crossing that
run into the other vessel); the mean is given too. ``junction_clearance`` optionally drops pixels closer to a
branching/crossing key point than clearance x their own width before the per-segment statistics.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import map_coordinates

_CHUNK = 8192  # centreline pixels per sampling batch (memory: chunk x 2 x samples floats)


@dataclass(frozen=True)
class CalibreConfig:
    """Parameters of the perpendicular width measurement (px = input pixels)."""

    direction_radius_px: float = 6.0  # centreline pixels of the same segment within this distance give the direction
    step_px: float = 0.25  # sampling step along the normal
    max_half_width_px: float = 30.0  # furthest sample from the centreline on each side (widths up to 60 px)
    level: float = 0.5  # iso-level of the vessel map that defines the vessel edge
    junction_clearance: float = 1.0  # drop pixels within clearance x width of a junction (0 = keep all)


@dataclass(frozen=True)
class CentrelineWidths:
    """Per-pixel widths. Arrays of length N (one entry per measured centreline pixel, raster order):
    rows, cols int64; segment int32 (segment id, 0 when unknown); normal float64 [N, 2] unit (drow, dcol);
    width_px float64 (NaN where not measurable); near_junction bool (True: excluded from segment statistics)."""

    rows: np.ndarray
    cols: np.ndarray
    segment: np.ndarray
    normal: np.ndarray
    width_px: np.ndarray
    near_junction: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """bool [N]: a finite width not excluded as near a junction."""
        return np.isfinite(self.width_px) & ~self.near_junction


def centreline_normals(segment_labels: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                       radius_px: float) -> np.ndarray:
    """int [H, W] segment ids (0 = none; a plain skeleton as int works too) + N pixels -> float64 [N, 2] unit normals
    (drow, dcol) perpendicular to the local centreline direction (PCA, module docstring step 1); NaN rows when fewer
    than 3 pixels of the same segment lie within ``radius_px``."""
    lab = np.asarray(segment_labels)
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    k = int(np.floor(radius_px))
    pad = np.pad(lab, k)
    own = lab[rows, cols]
    n = np.zeros(len(rows))
    sr, sc, srr, scc, src = (np.zeros(len(rows)) for _ in range(5))
    for dr in range(-k, k + 1):
        for dc in range(-k, k + 1):
            if dr * dr + dc * dc > radius_px * radius_px:
                continue
            hit = (pad[rows + k + dr, cols + k + dc] == own) & (own != 0)
            n += hit
            sr += hit * dr
            sc += hit * dc
            srr += hit * dr * dr
            scc += hit * dc * dc
            src += hit * dr * dc
    with np.errstate(invalid="ignore", divide="ignore"):
        mr, mc = sr / n, sc / n
        crr, ccc, crc = srr / n - mr * mr, scc / n - mc * mc, src / n - mr * mc
    theta = 0.5 * np.arctan2(2.0 * crc, crr - ccc)  # direction angle in the (row, col) plane
    out = np.stack([-np.sin(theta), np.cos(theta)], axis=1)  # perpendicular to (cos, sin)
    out[n < 3] = np.nan
    return out


def widths_along_normals(vessel_map: np.ndarray, rows: np.ndarray, cols: np.ndarray, normals: np.ndarray,
                         config: CalibreConfig = CalibreConfig()) -> np.ndarray:
    """float or bool [H, W] vessel map + N centre pixels + float [N, 2] unit normals -> float64 [N] widths (px)
    between the two ``level`` crossings through each centre (module docstring steps 2-4)."""
    vmap = np.asarray(vessel_map, np.float32)
    t = np.arange(0.0, config.max_half_width_px + 1e-9, config.step_px)
    out = np.full(len(rows), np.nan)
    for lo in range(0, len(rows), _CHUNK):
        sl = slice(lo, lo + _CHUNK)
        r0, c0 = np.asarray(rows[sl], float), np.asarray(cols[sl], float)
        nrm = np.asarray(normals[sl], float)
        ok = np.isfinite(nrm).all(axis=1)
        half = []
        for sign in (1.0, -1.0):
            pr = r0[:, None] + sign * nrm[:, 0:1] * t[None, :]
            pc = c0[:, None] + sign * nrm[:, 1:2] * t[None, :]
            pr, pc = np.nan_to_num(pr), np.nan_to_num(pc)
            v = map_coordinates(vmap, [pr.ravel(), pc.ravel()], order=1, mode="constant", cval=0.0)
            half.append(_first_crossing(v.reshape(pr.shape), t, config.level))
        w = half[0] + half[1]
        out[sl] = np.where(ok, w, np.nan)
    return out


def _first_crossing(profile: np.ndarray, t: np.ndarray, level: float) -> np.ndarray:
    """float [N, M] samples at distances t [M] -> float [N] distance where the profile first drops below ``level``
    (linear interpolation); NaN when the first sample is already below or no sample is."""
    below = profile < level
    k = np.argmax(below, axis=1)
    found = below[np.arange(len(k)), k] & (k > 0)
    km = np.maximum(k - 1, 0)
    idx = np.arange(len(k))
    v0, v1 = profile[idx, km], profile[idx, k]
    frac = np.divide(v0 - level, v0 - v1, out=np.zeros(len(k)), where=v0 != v1)
    return np.where(found, t[km] + frac * (t[1] - t[0]), np.nan)


def junction_distance(keypoint_labels: np.ndarray, junction_ids: list[int] | np.ndarray) -> np.ndarray:
    """int [H, W] key-point ids + ids of the junctions (branchings/crossings) -> float32 [H, W] Euclidean distance
    (px) to the nearest pixel of those key points (inf everywhere when there are none)."""
    lab = np.asarray(keypoint_labels)
    junction = np.isin(lab, np.asarray(junction_ids, lab.dtype)) & (lab > 0)
    if not junction.any():
        return np.full(lab.shape, np.inf, np.float32)
    return cv2.distanceTransform((~junction).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def measure_centreline_widths(vessel_map: np.ndarray, segment_labels: np.ndarray,
                              pixels: np.ndarray | None = None, keypoint_labels: np.ndarray | None = None,
                              junction_ids: list[int] | np.ndarray = (),
                              config: CalibreConfig = CalibreConfig()) -> CentrelineWidths:
    """Widths at centreline pixels.

    vessel_map: bool mask or float probability [H, W] at the input resolution. segment_labels: int [H, W] segment
    ids of the centreline (``VesselGraph.segment_labels``; key-point pixels are 0 and are not measured).
    pixels: optional bool [H, W] restricting which centreline pixels are measured (e.g. zone B); default all.
    keypoint_labels + junction_ids: key points whose neighbourhood is flagged ``near_junction`` (distance <
    ``junction_clearance`` x width); default none flagged.
    """
    lab = np.asarray(segment_labels)
    sel = lab > 0 if pixels is None else (lab > 0) & np.asarray(pixels, bool)
    rows, cols = np.nonzero(sel)
    normals = centreline_normals(lab, rows, cols, config.direction_radius_px)
    width = widths_along_normals(vessel_map, rows, cols, normals, config)
    near = np.zeros(len(rows), bool)
    if keypoint_labels is not None and len(junction_ids) and config.junction_clearance > 0:
        dist = junction_distance(keypoint_labels, junction_ids)[rows, cols]
        near = np.isfinite(width) & (dist < config.junction_clearance * width)
    return CentrelineWidths(rows.astype(np.int64), cols.astype(np.int64), lab[rows, cols].astype(np.int32),
                            normals, width, near)


def segment_width_stats(widths: CentrelineWidths, n_segments: int) -> dict[str, np.ndarray]:
    """Per-segment statistics of the valid per-pixel widths, arrays [S + 1] indexed by segment id (entry 0 unused):
    ``median_px`` and ``mean_px`` (NaN without a valid pixel) and ``n_valid`` (int64)."""
    ok = widths.valid
    seg, w = widths.segment[ok], widths.width_px[ok]
    n = np.bincount(seg, minlength=n_segments + 1).astype(np.int64)
    mean = np.divide(np.bincount(seg, weights=w, minlength=n_segments + 1), n,
                     out=np.full(n_segments + 1, np.nan), where=n > 0)
    median = np.full(n_segments + 1, np.nan)
    order = np.lexsort((w, seg))
    seg, w = seg[order], w[order]
    start = np.searchsorted(seg, np.arange(n_segments + 2))
    for s in np.flatnonzero(n):
        median[s] = float(np.median(w[start[s]:start[s + 1]]))
    median[0] = mean[0] = np.nan
    n[0] = 0
    return {"median_px": median, "mean_px": mean, "n_valid": n}
