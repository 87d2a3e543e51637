"""Vessel biomarkers of one image (clinical-rules §4): Knudtson CRAE/CRVE/AVR on zone B, vessel density, tortuosity,
fractal dimension, with units and reasons. Pure functions, no files.

Conventions: disc centre ``disc_xy`` in continuous input pixels (x right, y down, pixel centre = index + 0.5, as in
``disc_fovea``); ρ = distance of a pixel centre from the disc centre; r = disc radius = DD / 2 (px).

Zones (§4.1, inclusive bounds): A = r <= ρ <= 2r, B = 2r <= ρ <= 3r, C = 2r <= ρ <= 5r.

Vessels crossing zone B (rules chosen here where §4 is silent):
1. widths are measured (``calibre``) at the centreline pixels lying in zone B only; pixels closer to a branching or
   crossing than ``junction_clearance`` x their width are left out; a segment's zone-B width = median of the rest;
2. a segment is a candidate when it has centreline pixels in zone B and an A/V class (1 artery / 2 vein, from
   ``segment_av``; 0 = unknown is skipped), even when none of its widths is valid (a crossing's bridge still joins);
3. one vessel, counted once: candidate segments of the SAME class that meet at a key point lying in zone B (centroid
   ρ in [2r, 3r]) are one vessel (a vessel split by a crossing, a branching or a skeleton spur inside the zone). A
   crossing is often drawn as two branchings joined by a short bridge: junctions joined by a segment no longer than
   max(``crossing_merge_px``, ``bridge_width_factor`` x the vessel width there (2 x the largest distance-transform
   value on the bridge)) count as one key point (in zone B when any of them is). Key points outside zone B never
   join segments, so two branches of a trunk that divided before zone B are two vessels. Two same-class vessels
   crossing each other inside zone B merge (rare; undercount);
4. the vessel's width, first rule that applies (n = ``min_widths_per_vessel``):
   a. the LARGEST zone-B width (median) among its segments holding >= n widths each (at a bifurcation the trunk, as
      graders measure it proximal to the branching; for a vessel split by a crossing the pieces agree within noise);
   b. the median of all its widths when >= n but no single segment holds n (a crossing cuts it into short pieces);
   c. the 25th percentile of all its finite widths in zone B, near-junction ones included, when there are >= n (a
      thick vessel crossed at a shallow angle has no clean pixel left in the zone; a profile near a junction can only
      come out too wide, never too narrow, so a low percentile is close to the true width);
   d. otherwise the vessel is not counted.

CRAE / CRVE (Knudtson 2003, §4.2): ``knudtson_combine`` of the vessel widths per class (six largest, largest paired
with smallest, middle carried, 0.88 arterioles / 0.95 venules). Fewer than 6 of a class: that value is NaN with
``insufficient_vessels_for_CRE``. AVR = CRAE / CRVE (from px widths, scale-free). µm values = px x ``um_per_px``
when the scale is known (§4.3 cascade, ``resolve_scale``); otherwise NaN with ``scale_unknown_px_only``.
Tortuosity and fractal dimension: ``vessel_shape``; vessel density: ``vessels.vessel_density``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from retinacli.postprocess.av_labels import ARTERY, VEIN
from retinacli.postprocess.calibre import CalibreConfig, measure_centreline_widths, segment_width_stats
from retinacli.postprocess.vessel_graph import VesselGraph, group_keypoints, mask_to_vessel_graph
from retinacli.postprocess.vessel_shape import TortuosityConfig, fractal_dimension, segment_tortuosity
from retinacli.postprocess.vessels import vessel_density

N_LARGEST = 6  # Knudtson: six largest arterioles and six largest venules
KNUDTSON_FACTOR = {"artery": 0.88, "vein": 0.95}  # sqrt(1/1.28), sqrt(1/1.11) rounded as published
RETINA_UM_PER_DEG = 288.0  # µm per degree at the posterior pole (§3.1)
DISC_DIAMETER_UM = 1800.0  # mean disc diameter (§3.1)
ZONES = {"A": (1.0, 2.0), "B": (2.0, 3.0), "C": (2.0, 5.0)}  # (inner, outer) in disc radii from the disc centre

DISC_NOT_FOUND = "disc_not_found"
INSUFFICIENT_VESSELS = "insufficient_vessels_for_CRE"
SCALE_UNKNOWN = "scale_unknown_px_only"
AV_LABELS_MISSING = "av_labels_missing"
SCALE_SOURCES = ("dicom_pixel_spacing", "camera_fov", "disc_diameter", "none")


@dataclass(frozen=True)
class ImageScale:
    """µm per input pixel and where it came from (``SCALE_SOURCES``); um_per_px None when unknown."""

    um_per_px: float | None = None
    source: str = "none"

    @property
    def known(self) -> bool:
        return self.um_per_px is not None


def resolve_scale(pixel_spacing_mm: tuple[float, float] | None = None, fov_degrees: float | None = None,
                  fov_diameter_px: float | None = None, measured_disc_diameter_px: float | None = None) -> ImageScale:
    """The §4.3 cascade, first available wins:
    1. DICOM Pixel Spacing (0028,0030), (row, col) mm -> 1000 x their mean µm/px (nominal);
    2. camera field of view: ``fov_degrees`` x 288 µm/deg / ``fov_diameter_px``;
    3. disc: 1800 µm / ``measured_disc_diameter_px`` -- pass a MEASURED diameter only
       (``DiscFovea.measured_disc_diameter_px``, not the working DD, which leans on the 0.139 x FOV prior): the
       prior would turn an assumed 45 deg field into a fake scale;
    4. none -> ImageScale(None, "none").  Non-positive or missing inputs skip their step."""
    if pixel_spacing_mm is not None and all(v is not None and v > 0 for v in pixel_spacing_mm):
        return ImageScale(1000.0 * float(np.mean(pixel_spacing_mm)), "dicom_pixel_spacing")
    if fov_degrees and fov_diameter_px and fov_degrees > 0 and fov_diameter_px > 0:
        return ImageScale(float(fov_degrees) * RETINA_UM_PER_DEG / float(fov_diameter_px), "camera_fov")
    if measured_disc_diameter_px and measured_disc_diameter_px > 0:
        return ImageScale(DISC_DIAMETER_UM / float(measured_disc_diameter_px), "disc_diameter")
    return ImageScale()


def zone_radii(disc_radius_px: float, zone: str = "B") -> tuple[float, float]:
    """(inner, outer) radius in px from the disc centre: A (r, 2r), B (2r, 3r), C (2r, 5r)."""
    lo, hi = ZONES[zone]
    return lo * float(disc_radius_px), hi * float(disc_radius_px)


def distance_from_disc(shape: tuple[int, int], disc_xy: tuple[float, float]) -> np.ndarray:
    """float64 [H, W]: ρ of every pixel centre (index + 0.5) from the disc centre, px."""
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    return np.hypot(xx + 0.5 - disc_xy[0], yy + 0.5 - disc_xy[1])


def zone_mask(shape: tuple[int, int], disc_xy: tuple[float, float], disc_radius_px: float,
              zone: str = "B") -> np.ndarray:
    """bool [H, W]: pixel centres with inner <= ρ <= outer (``zone_radii``)."""
    lo, hi = zone_radii(disc_radius_px, zone)
    rho = distance_from_disc(shape, disc_xy)
    return (rho >= lo) & (rho <= hi)


def knudtson_pair(w_small: float, w_large: float, kind: str) -> float:
    """One Knudtson combination: factor x sqrt(w1² + w2²), factor 0.88 ('artery') or 0.95 ('vein')."""
    return KNUDTSON_FACTOR[kind] * math.sqrt(w_small * w_small + w_large * w_large)


def knudtson_combine(widths, kind: str) -> float:
    """Central retinal equivalent (CRAE for kind='artery', CRVE for 'vein') in the unit of ``widths``: §4.2's
    ``combine`` verbatim -- six largest, pair the i-th smallest with the i-th largest, carry the middle of an odd
    count, re-sort, repeat (6 -> 3 -> 2 -> 1). NaN with fewer than 6 widths."""
    if kind not in KNUDTSON_FACTOR:
        raise ValueError(f"kind must be 'artery' or 'vein', got {kind!r}")
    w = sorted(float(x) for x in widths)[-N_LARGEST:]
    if len(w) < N_LARGEST:
        return math.nan
    while len(w) > 1:
        nxt = [knudtson_pair(w[i], w[-1 - i], kind) for i in range(len(w) // 2)]
        if len(w) % 2:
            nxt.append(w[len(w) // 2])
        w = sorted(nxt)
    return w[0]


def segment_av_from_label_map(graph: VesselGraph, av_map: np.ndarray) -> np.ndarray:
    """uint8 [H, W] A/V label map (0 none, 1 artery, 2 vein; e.g. ``AvResult.label_map`` or a ground-truth map)
    -> uint8 [S + 1] class per segment: the majority of its centreline pixels' labels (ties and unlabelled: 0)."""
    rr, cc = np.nonzero(graph.segment_labels)
    s = graph.segment_labels[rr, cc]
    lab = np.asarray(av_map)[rr, cc]
    n = graph.n_segments + 1
    a = np.bincount(s[lab == ARTERY], minlength=n)
    v = np.bincount(s[lab == VEIN], minlength=n)
    out = np.where(a > v, ARTERY, np.where(v > a, VEIN, 0)).astype(np.uint8)
    out[0] = 0
    return out


@dataclass(frozen=True)
class ZoneVessel:
    """One vessel crossing zone B: class (1 artery, 2 vein), width (px, rule 4), its segment ids."""

    av: int
    width_px: float
    segment_ids: tuple[int, ...]


@dataclass(frozen=True)
class BiomarkerConfig:
    """Parameters of ``compute_biomarkers`` (px = input pixels)."""

    calibre: CalibreConfig = field(default_factory=CalibreConfig)
    min_widths_per_vessel: int = 3  # zone-B widths (centreline pixels) a vessel needs to be counted
    crossing_merge_px: float = 10.0  # junctions joined by a segment this short are one crossing (fixed px, with
    # bridge_width_factor below; av_labels.AvGraphConfig has its own FOV-scaled value, 25 px at HRF scale)
    bridge_width_factor: float = 1.5  # ... or by a segment no longer than this x the vessel width on it
    tortuosity: TortuosityConfig = field(default_factory=TortuosityConfig)
    fd_min_box_px: int = 2  # smallest box edge of the D0 fit
    fd_max_box_fraction: float = 0.125  # largest box edge <= this share of the FOV bounding box's shorter side


def junction_groups(graph: VesselGraph, mask: np.ndarray, merge_px: float, width_factor: float) -> dict[int, int]:
    """{key-point id: group id}: junctions (branchings/crossings) joined by a bridge segment of length_px <=
    max(merge_px, width_factor x 2 x max distance-transform of ``mask`` on the bridge) form one group (one crossing
    drawn as two nearby junctions); group id = smallest member id; every other key point is its own group."""
    dist = cv2.distanceTransform(np.asarray(mask, bool).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    rr, cc = np.nonzero(graph.segment_labels)
    half = np.zeros(graph.n_segments + 1)
    np.maximum.at(half, graph.segment_labels[rr, cc], dist[rr, cc])
    kp = graph.keypoints
    return group_keypoints(graph, lambda seg: kp[seg.nodes[0]].kind != "end" and kp[seg.nodes[1]].kind != "end"
                           and seg.length_px <= max(merge_px, width_factor * 2.0 * half[seg.id]))


def zone_b_vessels(graph: VesselGraph, segment_av: np.ndarray, vessel_map: np.ndarray, disc_xy: tuple[float, float],
                   disc_radius_px: float, config: BiomarkerConfig = BiomarkerConfig()) -> list[ZoneVessel]:
    """Vessels crossing zone B with one width each (module docstring rules 1-4), widest first."""
    zone = zone_mask(graph.segment_labels.shape, disc_xy, disc_radius_px, "B")
    junctions = [k for k, p in graph.keypoints.items() if p.kind != "end"]
    cw = measure_centreline_widths(vessel_map, graph.segment_labels, zone, graph.keypoint_labels, junctions,
                                   config.calibre)
    stats = segment_width_stats(cw, graph.n_segments)
    av = np.asarray(segment_av)
    n_valid, median = stats["n_valid"], stats["median_px"]
    cand = [int(s) for s in np.unique(cw.segment) if s > 0 and av[s] in (ARTERY, VEIN)]
    parent = {s: s for s in cand}

    def root(s: int) -> int:
        while parent[s] != s:
            s = parent[s]
        return s

    lo, hi = zone_radii(disc_radius_px, "B")
    group = junction_groups(graph, np.asarray(vessel_map) >= config.calibre.level, config.crossing_merge_px,
                            config.bridge_width_factor)
    in_zone: dict[int, bool] = {}
    for k, kp in graph.keypoints.items():
        rho = math.hypot(kp.centroid_rc[1] + 0.5 - disc_xy[0], kp.centroid_rc[0] + 0.5 - disc_xy[1])
        in_zone[group[k]] = in_zone.get(group[k], False) or lo <= rho <= hi
    at: dict[tuple[int, int], list[int]] = {}
    for s in cand:
        for k in set(graph.segments[s].nodes) - {0}:
            if in_zone[group[k]]:
                at.setdefault((group[k], int(av[s])), []).append(s)
    for members in at.values():
        for s in members[1:]:
            a, b = root(members[0]), root(s)
            parent[max(a, b)] = min(a, b)
    vessels: dict[int, list[int]] = {}
    for s in cand:
        vessels.setdefault(root(s), []).append(s)
    need = config.min_widths_per_vessel
    finite = np.isfinite(cw.width_px)
    out = []
    for m in vessels.values():
        solid = [float(median[s]) for s in m if n_valid[s] >= need]
        mine = np.isin(cw.segment, m)
        if solid:
            width = max(solid)  # rule 4a
        elif np.count_nonzero(mine & cw.valid) >= need:
            width = float(np.median(cw.width_px[mine & cw.valid]))  # 4b
        elif np.count_nonzero(mine & finite) >= need:
            width = float(np.percentile(cw.width_px[mine & finite], 25))  # 4c
        else:
            continue  # 4d
        out.append(ZoneVessel(int(av[m[0]]), width, tuple(sorted(m))))
    return sorted(out, key=lambda v: (-v.width_px, v.segment_ids))


def _um(px: float, scale: ImageScale) -> float:
    return px * scale.um_per_px if scale.known and np.isfinite(px) else math.nan


@dataclass(frozen=True)
class Biomarkers:
    """Biomarkers of one image. Lengths/widths in px (input pixels) unless the name says µm; NaN = not measured,
    with the codes in ``reasons`` (``disc_not_found``, ``insufficient_vessels_for_CRE``, ``scale_unknown_px_only``,
    ``av_labels_missing``) and ``reason_detail`` in words (counts included)."""

    crae_px: float = math.nan
    crve_px: float = math.nan
    avr: float = math.nan
    crae_um: float = math.nan
    crve_um: float = math.nan
    n_arterioles_zone_b: int = 0
    n_venules_zone_b: int = 0
    arteriole_widths_px: tuple[float, ...] = ()  # all zone-B arterioles, widest first (the first six enter CRAE)
    venule_widths_px: tuple[float, ...] = ()
    disc_radius_px: float = math.nan
    um_per_px: float | None = None
    scale_source: str = "none"
    vessel_density_fov: float = math.nan  # vessel px in the FOV / FOV px
    vessel_density_zone_b: float = math.nan  # vessel px in zone B ∩ FOV / zone B ∩ FOV px
    tortuosity_median: float = math.nan  # median distance factor L / chi
    tortuosity_index: float = math.nan  # sum(L) / sum(chi)
    tortuosity_n_segments: int = 0
    tortuosity_length_px: float = 0.0  # sum(L) over those segments
    fractal_dimension_d0: float = math.nan
    fd_box_sizes_px: tuple[int, ...] = ()
    calibre_source: str = "mask"  # "mask" or "probability"
    reasons: tuple[str, ...] = ()
    reason_detail: str = ""

    def flags(self) -> dict[str, bool]:
        """The §9 biomarker flags."""
        return {code: code in self.reasons for code in (INSUFFICIENT_VESSELS, SCALE_UNKNOWN)}

    def as_row(self) -> dict[str, object]:
        """CSV columns (units in the names; NaN -> empty cell in pandas)."""
        lo, hi = zone_radii(self.disc_radius_px, "B")
        return {
            "crae_px": self.crae_px, "crve_px": self.crve_px, "avr": self.avr,
            "crae_um": self.crae_um, "crve_um": self.crve_um, "cre_method": "knudtson_2003",
            "n_arterioles_zone_b": self.n_arterioles_zone_b, "n_venules_zone_b": self.n_venules_zone_b,
            "crae_widths_px": ";".join(f"{w:.2f}" for w in self.arteriole_widths_px[:N_LARGEST]),
            "crve_widths_px": ";".join(f"{w:.2f}" for w in self.venule_widths_px[:N_LARGEST]),
            "calibre_method": f"perpendicular_profile_{self.calibre_source}",
            "disc_radius_px": self.disc_radius_px, "zone_b_inner_px": lo, "zone_b_outer_px": hi,
            "um_per_px": self.um_per_px if self.um_per_px is not None else math.nan, "scale_source": self.scale_source,
            "vessel_density_fov": self.vessel_density_fov, "vessel_density_zone_b": self.vessel_density_zone_b,
            "tortuosity_distance_factor_median": self.tortuosity_median, "tortuosity_index": self.tortuosity_index,
            "tortuosity_n_segments": self.tortuosity_n_segments, "tortuosity_length_px": self.tortuosity_length_px,
            "fractal_dimension_d0": self.fractal_dimension_d0, "fd_method": "box_count_occupied",
            "fd_box_min_px": min(self.fd_box_sizes_px) if self.fd_box_sizes_px else math.nan,
            "fd_box_max_px": max(self.fd_box_sizes_px) if self.fd_box_sizes_px else math.nan, "fd_roi": "fov",
            **self.flags(), "biomarker_reasons": ";".join(self.reasons), "biomarker_reason_detail": self.reason_detail,
        }


def compute_biomarkers(mask: np.ndarray, fov: np.ndarray, disc_xy: tuple[float, float] | None,
                       disc_diameter_px: float | None, segment_av: np.ndarray | None = None,
                       graph: VesselGraph | None = None, prob: np.ndarray | None = None,
                       scale: ImageScale = ImageScale(), config: BiomarkerConfig = BiomarkerConfig()) -> Biomarkers:
    """All biomarkers of one image.

    mask: bool [H, W] vessel mask at the input resolution; fov: bool [H, W]. disc_xy / disc_diameter_px: the disc
    centre (continuous px) and DD (px), None (or NaN coordinates, as ``DiscFovea`` gives) when the disc was not found
    -> CRE and zone-B density NaN with ``disc_not_found``. Zones may use the 0.139 x FOV prior DD; the µm scale may
    not (see ``resolve_scale``). segment_av: uint8 [S + 1] A/V class per segment of ``graph``
    (``AvResult.table["label"]`` with a leading 0, or ``segment_av_from_label_map``); graph: the mask's vessel graph
    (built here when None). prob: optional float [H, W] vessel probability sampled for the calibre instead of the
    mask (edge at ``config.calibre.level``, which should equal the mask threshold). scale: from ``resolve_scale``.
    Density, tortuosity and D0 need neither disc nor A/V labels.
    """
    mask = np.asarray(mask, bool) & np.asarray(fov, bool)
    graph = graph if graph is not None else mask_to_vessel_graph(mask)
    reasons: list[str] = []
    details: list[str] = []
    tort = segment_tortuosity(graph, config.tortuosity)
    fd = fractal_dimension(mask, fov, config.fd_min_box_px, config.fd_max_box_fraction)
    common = dict(vessel_density_fov=vessel_density(mask, np.asarray(fov, bool)), tortuosity_median=tort.median,
                  tortuosity_index=tort.index, tortuosity_n_segments=len(tort.segment_ids),
                  tortuosity_length_px=tort.total_length_px, fractal_dimension_d0=fd.d0,
                  fd_box_sizes_px=fd.box_sizes_px, um_per_px=scale.um_per_px, scale_source=scale.source,
                  calibre_source="probability" if prob is not None else "mask")
    if not scale.known:
        reasons.append(SCALE_UNKNOWN)
        details.append("scale unknown: widths in px only")
    if disc_xy is None or not disc_diameter_px or disc_diameter_px <= 0 or not np.all(np.isfinite(disc_xy)):
        reasons.insert(0, DISC_NOT_FOUND)
        details.insert(0, "disc not found: no zone B, CRAE/CRVE/AVR not measured")
        return Biomarkers(reasons=tuple(reasons), reason_detail="; ".join(details), **common)
    r = 0.5 * float(disc_diameter_px)
    zone = zone_mask(mask.shape, disc_xy, r, "B") & np.asarray(fov, bool)
    common["vessel_density_zone_b"] = vessel_density(mask, zone)
    if segment_av is None:
        reasons.insert(0, AV_LABELS_MISSING)
        details.insert(0, "no artery/vein labels: CRAE/CRVE/AVR not measured")
        return Biomarkers(disc_radius_px=r, reasons=tuple(reasons), reason_detail="; ".join(details), **common)
    vessels = zone_b_vessels(graph, segment_av, prob if prob is not None else mask, disc_xy, r, config)
    wa = tuple(v.width_px for v in vessels if v.av == ARTERY)
    wv = tuple(v.width_px for v in vessels if v.av == VEIN)
    crae, crve = knudtson_combine(wa, "artery"), knudtson_combine(wv, "vein")
    if len(wa) < N_LARGEST or len(wv) < N_LARGEST:
        reasons.insert(0, INSUFFICIENT_VESSELS)
        details.insert(0, f"insufficient vessels for CRE: {len(wa)} arterioles, {len(wv)} venules in zone B "
                          f"(need {N_LARGEST} each)")
    return Biomarkers(crae_px=crae, crve_px=crve, avr=crae / crve if np.isfinite(crae) and np.isfinite(crve) else
                      math.nan, crae_um=_um(crae, scale), crve_um=_um(crve, scale), n_arterioles_zone_b=len(wa),
                      n_venules_zone_b=len(wv), arteriole_widths_px=wa, venule_widths_px=wv, disc_radius_px=r,
                      reasons=tuple(reasons), reason_detail="; ".join(details), **common)
