"""Haemorrhage findings, disc/fovea geometry and the DR hint of one image, as report columns (clinical-rules
§2, §3.3, §9). Called from ``pipeline.item.finish_item`` in a worker thread.

Input: the image, its vessel probability at input resolution, the haemorrhage probability at input resolution
and the quality verdict columns. Output: the haemorrhage mask, the per-finding rows and the report columns.
Ungradable images keep their masks (written for review) but their counts and hint are NOT_ASSESSED.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from retinacli.postprocess.disc_fovea import DiscFovea, locate_disc_fovea
from retinacli.postprocess.fundus_geometry import DISC_FOVEA, DISC_ONLY_ESTIMATED_FOVEA, FundusAxes, fundus_axes
from retinacli.postprocess.grade_hints import (WORDING, HaemorrhageFindings, HintConfig, QualityVerdict,
                                               blot_min_diameter_px, dr_hints)
from retinacli.postprocess.lesions import Lesion, lesion_components, min_distance_to_point_px
from retinacli.preprocess.normalise import Prepared

GEOMETRY_FIELDS = ["disc_found", "disc_x", "disc_y", "disc_diameter_px", "disc_diameter_method", "fovea_found",
                   "fovea_method", "fovea_x", "fovea_y", "quadrant_method", "quadrants_image_centred", "fovea_not_found",
                   "possibly_inverted", "geometry_reason"]
HEMORRHAGE_FIELDS = ["hemorrhage_assessed", "hemorrhage_count", "hemorrhage_blot_count", "hemorrhage_area_px",
                     "hemorrhage_area_share_fov", "hemorrhage_largest_area_px", "hemorrhage_per_quadrant",
                     "hemorrhage_per_hemifield", "hemorrhage_nearest_fovea_dd", "hemorrhage_within_1dd",
                     "hemorrhage_threshold"]
HINT_FIELDS = ["dr_hint_headline", "dr_hint_text", "dr_hint_codes", "hint_basis", "hint_is_lower_bound"]
FINDINGS_FIELDS = ["image_id", "finding_id", "kind", "area_px", "equivalent_diameter_px", "centroid_x", "centroid_y",
                   "bbox_x", "bbox_y", "bbox_w", "bbox_h", "blot_sized", "quadrant", "hemifield",
                   "distance_to_fovea_dd", "covers_fovea_centre"]


@dataclass
class ImageFindings:
    """What ``hemorrhage_findings`` returns: the mask bool [H, W], one dict per finding, the report columns,
    and the geometry (for the overlay)."""

    mask: np.ndarray
    findings: list[dict]
    columns: dict
    geometry: DiscFovea
    axes: FundusAxes


def _r(v: float | None, nd: int = 4):
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), nd)


def quality_verdict(quality_cols: dict) -> QualityVerdict:
    """Report quality columns -> the hint rules' verdict (a quality error counts as not gradable)."""
    gradable = quality_cols.get("quality") == "gradable"
    return QualityVerdict(gradable, "" if gradable else str(quality_cols.get("quality_reason") or "quality not assessed"))


def _fovea_method(geo: DiscFovea, axes: FundusAxes) -> str:
    """How the fovea used for the axes was obtained, consistent with ``axes.quadrant_method``."""
    if axes.quadrant_method == DISC_FOVEA:
        return geo.fovea_method
    return "estimated_from_disc" if axes.quadrant_method == DISC_ONLY_ESTIMATED_FOVEA else "none"


def geometry_columns(geo: DiscFovea, axes: FundusAxes) -> dict:
    return {"disc_found": geo.disc_found, "disc_x": _r(geo.disc_x, 1), "disc_y": _r(geo.disc_y, 1),
            "disc_diameter_px": _r(geo.disc_diameter_px, 1), "disc_diameter_method": geo.dd_method,
            "fovea_found": geo.fovea_found,
            "fovea_method": _fovea_method(geo, axes), "fovea_x": _r(geo.fovea_x, 1), "fovea_y": _r(geo.fovea_y, 1),
            "quadrant_method": axes.quadrant_method,
            "quadrants_image_centred": axes.quadrants_image_centred, "fovea_not_found": axes.fovea_not_found,
            "possibly_inverted": axes.possibly_inverted, "geometry_reason": geo.reason}


def finding_rows(image_id: str, lesions: list[Lesion], axes: FundusAxes, blot_px: float) -> list[dict]:
    """One row per haemorrhage component (input px; distances to the fovea in DD, min over its pixels).
    ``covers_fovea_centre``: the fovea centre pixel (found or estimated) lies in the component -- the dark fovea
    itself can be mistaken for a haemorrhage, so a grader should look at such a finding first (it is kept)."""
    rows = []
    fc = None if axes.fovea_xy is None else (int(axes.fovea_xy[0]), int(axes.fovea_xy[1]))
    for i, les in enumerate(lesions, start=1):
        dist = (min_distance_to_point_px(les, axes.fovea_xy) / axes.dd_px) if axes.fovea_xy is not None else math.nan
        x, y, w, h = les.bbox_xywh
        rows.append({"image_id": image_id, "finding_id": i, "kind": "haemorrhage", "area_px": les.area_px,
                     "equivalent_diameter_px": _r(les.equivalent_diameter_px, 2), "centroid_x": _r(les.centroid_xy[0], 1),
                     "centroid_y": _r(les.centroid_xy[1], 1), "bbox_x": x, "bbox_y": y, "bbox_w": w, "bbox_h": h,
                     "blot_sized": les.equivalent_diameter_px >= blot_px * (1 - 1e-9),
                     "quadrant": axes.quadrant_of(les.centroid_xy) or "", "hemifield": axes.hemifield_of(les.centroid_xy) or "",
                     "distance_to_fovea_dd": _r(dist, 3),
                     "covers_fovea_centre": fc is not None and bool(np.any((les.pixels_xy[:, 0] == fc[0])
                                                                           & (les.pixels_xy[:, 1] == fc[1])))})
    return rows


def locate_geometry(rgb: np.ndarray, prep: Prepared, vessel_prob: np.ndarray | None) -> tuple[DiscFovea, FundusAxes]:
    """Disc and fovea (``locate_disc_fovea``) and the quadrant axes (``fundus_axes``) of one image."""
    geo = locate_disc_fovea(rgb, prep.fov_mask, vessel_prob)
    circle = prep.circle
    disc = (geo.disc_x, geo.disc_y) if geo.disc_found else None
    fovea = (geo.fovea_x, geo.fovea_y) if geo.fovea_found else None
    axes = fundus_axes((circle.cx, circle.cy), circle.diameter_px, disc, fovea,
                       geo.disc_diameter_px if geo.dd_method != "fov_prior" else None)
    return geo, axes


def hemorrhage_findings(image_id: str, rgb: np.ndarray, prep: Prepared, vessel_prob: np.ndarray | None,
                        hemorrhage_prob: np.ndarray, threshold: float, quality_cols: dict,
                        cfg: HintConfig = HintConfig(),
                        geometry: tuple[DiscFovea, FundusAxes] | None = None) -> ImageFindings:
    """rgb uint8 [H, W, 3]; vessel_prob, hemorrhage_prob float32 [H, W] in [0, 1] at input resolution.
    ``geometry``: (disc/fovea, axes) from ``locate_geometry`` when already computed for this image."""
    mask = (hemorrhage_prob >= threshold) & prep.fov_mask
    geo, axes = geometry if geometry is not None else locate_geometry(rgb, prep, vessel_prob)
    lesions = lesion_components(mask, cfg.min_component_area_px)
    fov_area = int(np.count_nonzero(prep.fov_mask))
    verdict = quality_verdict(quality_cols)
    hint = dr_hints(HaemorrhageFindings(tuple(lesions), fov_area), axes, verdict, cfg)
    cols = {**geometry_columns(geo, axes), **{k: "" for k in HEMORRHAGE_FIELDS},
            "hemorrhage_threshold": round(threshold, 4)}
    hint_row = hint.as_row()
    cols.update({k: hint_row[k] for k in HINT_FIELDS})
    cols["dr_hint_text"] = hint.headline_text
    blot_px, _ = blot_min_diameter_px(axes, cfg, None)
    s = hint.summary
    if s is None:  # ungradable: the mask is still written for review, the counts are not assessed
        cols["hemorrhage_assessed"] = False
    else:
        cols.update(hemorrhage_assessed=True, hemorrhage_count=s.n_components, hemorrhage_blot_count=s.n_blot,
                    hemorrhage_area_px=s.total_area_px, hemorrhage_area_share_fov=_r(s.area_share_fov, 6),
                    hemorrhage_largest_area_px=s.largest_area_px,
                    hemorrhage_per_quadrant=";".join(f"{k}={v}" for k, v in s.per_quadrant.items()),
                    hemorrhage_per_hemifield=";".join(f"{k}={v}" for k, v in s.per_hemifield.items()),
                    hemorrhage_nearest_fovea_dd=_r(s.nearest_to_fovea_dd, 3),
                    hemorrhage_within_1dd="" if s.n_within_dd is None else s.n_within_dd.get(1.0, ""))
    return ImageFindings(mask, finding_rows(image_id, lesions, axes, blot_px), cols, geo, axes)


def not_run_columns(reason: str) -> dict:
    """Columns when the haemorrhage model did not run for this image (e.g. --no-hemorrhage)."""
    text = WORDING["NOT_ASSESSED"].format(reason=reason)
    cols = {k: "" for k in GEOMETRY_FIELDS + HEMORRHAGE_FIELDS + HINT_FIELDS}
    cols.update(hemorrhage_assessed=False, dr_hint_headline="NOT_ASSESSED", dr_hint_text=text,
                dr_hint_codes="NOT_ASSESSED", hint_basis=f"NOT_ASSESSED: {reason}", hint_is_lower_bound=True)
    return cols
