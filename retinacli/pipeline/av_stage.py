"""Artery/vein map, vessel segments and biomarkers of one image, as outputs and report columns (clinical-rules §4).
Called from ``pipeline.item.finish_item`` in a worker thread.

Input: the vessel mask and probability (vessel model), the A/V model's artery / vein probabilities, all at input
resolution, the disc location and the quality columns. The graph post-processing (``postprocess.av_labels``) labels
every vessel-mask pixel; ``postprocess.biomarkers`` measures CRAE/CRVE/AVR (zone B), density, tortuosity and D0.
Ungradable images keep their A/V map (written for review) but their biomarkers are NOT_ASSESSED.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from retinacli.postprocess.av_labels import ARTERY, VEIN, AvGraphConfig, label_vessels_av
from retinacli.postprocess.biomarkers import BiomarkerConfig, Biomarkers, compute_biomarkers, resolve_scale
from retinacli.postprocess.disc_fovea import DiscFovea
from retinacli.preprocess.normalise import Prepared

BIOMARKER_FIELDS = list(Biomarkers().as_row())
AV_FIELDS = ["av_assessed", "av_segments", "av_artery_pixel_share", "av_vein_pixel_share", "av_threshold",
             *BIOMARKER_FIELDS]
SEGMENT_FIELDS = ["image_id", "segment_id", "label", "confidence", "propagated", "length_px", "mean_width_px",
                  "n_pixels", "end1_x", "end1_y", "end2_x", "end2_y"]
LABEL_NAMES = {0: "unknown", ARTERY: "artery", VEIN: "vein"}
AV_RGB = {ARTERY: (255, 0, 0), VEIN: (0, 0, 255)}


@dataclass
class AvOutputs:
    """label_map uint8 [H, W] (0 none, 1 artery, 2 vein), colour RGB uint8 [H, W, 3], segment rows, columns."""

    label_map: np.ndarray
    colour: np.ndarray
    segments: list[dict]
    columns: dict


def _cell(v):
    if isinstance(v, (float, np.floating)):
        return "" if not math.isfinite(float(v)) else round(float(v), 5)
    return v


def av_colour_map(label_map: np.ndarray) -> np.ndarray:
    """uint8 [H, W] A/V labels -> RGB uint8 [H, W, 3]: red arteries, blue veins, black elsewhere."""
    out = np.zeros(label_map.shape + (3,), np.uint8)
    for lab, rgb in AV_RGB.items():
        out[label_map == lab] = rgb
    return out


def segment_rows(image_id: str, table: dict[str, np.ndarray]) -> list[dict]:
    """segments.csv rows (input px; end points as pixel centres x, y)."""
    rows = []
    for i in range(len(table["segment_id"])):
        rows.append({"image_id": image_id, "segment_id": int(table["segment_id"][i]),
                     "label": LABEL_NAMES.get(int(table["label"][i]), "unknown"),
                     "confidence": round(float(table["confidence"][i]), 4), "propagated": bool(table["propagated"][i]),
                     "length_px": round(float(table["length_px"][i]), 2),
                     "mean_width_px": round(float(table["mean_width_px"][i]), 2), "n_pixels": int(table["n_pixels"][i]),
                     "end1_x": int(table["end1_col"][i]) + 0.5, "end1_y": int(table["end1_row"][i]) + 0.5,
                     "end2_x": int(table["end2_col"][i]) + 0.5, "end2_y": int(table["end2_row"][i]) + 0.5})
    return rows


def av_outputs(image_id: str, prep: Prepared, vessel_mask: np.ndarray, vessel_prob: np.ndarray | None,
               p_artery: np.ndarray, p_vein: np.ndarray, geometry: DiscFovea, quality_cols: dict,
               vessel_threshold: float, config: AvGraphConfig = AvGraphConfig(),
               biomarker_config: BiomarkerConfig = BiomarkerConfig()) -> AvOutputs:
    """vessel_mask bool [H, W]; vessel_prob, p_artery, p_vein float32 [H, W] at input resolution. The graph distances
    are scaled to the image's FOV diameter; the calibre is read from ``vessel_prob`` at ``vessel_threshold``."""
    res = label_vessels_av(vessel_mask, p_artery, p_vein, config.for_fov_diameter(prep.circle.diameter_px))
    n_ves = max(int(np.count_nonzero(vessel_mask)), 1)
    cols = {k: "" for k in AV_FIELDS}
    cols.update(av_segments=res.graph.n_segments, av_threshold=round(vessel_threshold, 4),
                av_artery_pixel_share=round(np.count_nonzero(res.label_map == ARTERY) / n_ves, 4),
                av_vein_pixel_share=round(np.count_nonzero(res.label_map == VEIN) / n_ves, 4))
    if quality_cols.get("quality") != "gradable":
        cols.update(av_assessed=False, biomarker_reasons="not_assessed_ungradable",
                    biomarker_reason_detail=f"image not gradable ({quality_cols.get('quality_reason', '')}): "
                                            "biomarkers not assessed; the A/V map is written for review")
    else:
        disc = (geometry.disc_x, geometry.disc_y) if geometry.disc_found else None
        scale = resolve_scale(measured_disc_diameter_px=geometry.measured_disc_diameter_px)  # NaN: no fit, no scale
        seg_av = np.concatenate([[0], np.asarray(res.table["label"], np.uint8)])
        bio = compute_biomarkers(vessel_mask, prep.fov_mask, disc, geometry.disc_diameter_px if disc else None,
                                 seg_av, res.graph, None, scale, biomarker_config)
        cols.update(av_assessed=True, **{k: _cell(v) for k, v in bio.as_row().items()})
    return AvOutputs(res.label_map, av_colour_map(res.label_map), segment_rows(image_id, res.table), cols)
