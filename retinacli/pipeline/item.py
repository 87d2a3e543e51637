"""Work on one input: decode + prepare (before inference) and post-process + write (after). Called from
worker threads; every failure becomes a row with a reason instead of an exception."""
from __future__ import annotations

import csv
import hashlib
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retinacli.io.decode import DecodeError, decode_image
from retinacli.io.discover import InputItem
from retinacli.io.write import confined_path, encode_image, write_bytes_atomic
from retinacli.pipeline.av_stage import AV_FIELDS, SEGMENT_FIELDS, av_outputs
from retinacli.pipeline.findings import (FINDINGS_FIELDS, GEOMETRY_FIELDS, HEMORRHAGE_FIELDS, HINT_FIELDS,
                                         hemorrhage_findings, locate_geometry, not_run_columns)
from retinacli.postprocess.av_labels import AvGraphConfig
from retinacli.postprocess.biomarkers import BiomarkerConfig
from retinacli.postprocess.grade_hints import HintConfig
from retinacli.postprocess.quality import QualityConfig, QualityMeasures, assess_quality
from retinacli.postprocess.vessels import prob_to_uint8, probs_to_mask, vessel_density
from retinacli.preprocess.normalise import Prepared, ScaleSpec, from_canvas, prepare
from retinacli.report.overlay import av_overlay, hemorrhage_overlay, vessel_overlay

QUALITY_FIELDS = ["quality", "quality_reason", "quality_flags", "quality_cautions",
                  *(f"q_{name}" for name in QualityMeasures.__dataclass_fields__ if name != "vessel_density")]
ROW_FIELDS = ["image_id", "path", "status", "reason", "width", "height", "fov_diameter_px", "fov_circle_fitted",
              *QUALITY_FIELDS, "vessel_density", "vessel_threshold", *HINT_FIELDS, *HEMORRHAGE_FIELDS,
              *GEOMETRY_FIELDS, *AV_FIELDS, "decode_ms", "preprocess_ms", "inference_ms", "hemorrhage_inference_ms",
              "av_inference_ms", "postprocess_ms", "write_ms", "outputs"]

# identifies the row layout and the rules behind it; part of the resume key, so rows of another layout are redone
ROW_SCHEMA = hashlib.sha256(repr((ROW_FIELDS, QualityConfig(), HintConfig())).encode()).hexdigest()[:12]

OUTPUT_NAMES = {"mask": "vessels.png", "overlay": "vessels_overlay.jpg", "probability": "vessel_probability.png",
                "hemorrhage_mask": "hemorrhages.png", "hemorrhage_overlay": "hemorrhages_overlay.jpg",
                "hemorrhage_probability": "hemorrhage_probability.png", "findings": "hemorrhage_findings.csv",
                "av_map": "av.png", "av_overlay": "av_overlay.jpg", "segments": "segments.csv"}
CSV_OUTPUTS = {"findings": FINDINGS_FIELDS, "segments": SEGMENT_FIELDS}
HEMORRHAGE_NOT_RUN = "haemorrhage model not run (--no-hemorrhage)"
EXTRA_STAGES = ("hemorrhage", "av")  # models run after the vessel model, each on its own canvas


@dataclass
class ModelOutput:
    """A further model's output for one image: probabilities float32 [C, S, S] on its own canvas (C = 1 for the
    haemorrhage model; 3 = vessel, artery, vein for the A/V model), its threshold and time per image."""

    prob_canvas: np.ndarray
    threshold: float
    inference_ms: float


def base_row(item: InputItem) -> dict:
    row = {k: "" for k in ROW_FIELDS}
    row.update(image_id=item.image_id, path=str(item.path))
    return row


def failed_row(item: InputItem, reason: str, **extra) -> dict:
    row = base_row(item)
    row.update(status="failed", reason=reason, **extra)
    return row


@dataclass
class Loaded:
    """An input after decoding and preparation (or the row explaining why it failed)."""

    item: InputItem
    row: dict
    rgb: np.ndarray | None = None
    prepared: Prepared | None = None
    timings: dict = field(default_factory=dict)
    extra_prepared: dict[str, Prepared] = field(default_factory=dict)  # the image on each further model's canvas


def load_item(item: InputItem, spec: ScaleSpec, extra_specs: dict[str, ScaleSpec] | None = None) -> Loaded:
    """Decode and prepare one input for the vessel model (``spec``) and for each further model (``extra_specs``,
    e.g. {"hemorrhage": ..., "av": ...}; the FOV is estimated once, a canvas of the same scale is shared)."""
    t0 = time.perf_counter()
    try:
        rgb = decode_image(item.path)
    except DecodeError as exc:
        return Loaded(item, failed_row(item, f"{exc.reason}: {exc}"))
    except Exception as exc:  # unexpected decoder failure: still a row, never a crash
        return Loaded(item, failed_row(item, f"decode_error: {type(exc).__name__}: {exc}"))
    t1 = time.perf_counter()
    try:
        prep = prepare(rgb, spec)
        extra = {name: prep if s == spec else prepare(rgb, s, prep.fov_mask, prep.circle)
                 for name, s in (extra_specs or {}).items()}
    except Exception as exc:
        return Loaded(item, failed_row(item, f"preprocess_error: {type(exc).__name__}: {exc}",
                                       width=rgb.shape[1], height=rgb.shape[0]))
    t2 = time.perf_counter()
    row = base_row(item)
    row.update(width=rgb.shape[1], height=rgb.shape[0], fov_diameter_px=round(prep.circle.diameter_px, 1),
               fov_circle_fitted=prep.circle.fitted)
    return Loaded(item, row, rgb, prep, {"decode_ms": (t1 - t0) * 1e3, "preprocess_ms": (t2 - t1) * 1e3}, extra)


def item_dir(image_id: str) -> Path:
    """Output folder of one input, relative to --out: its id (relative path, extension kept, so ids never clash)."""
    return Path(image_id)


def quality_columns(rgb: np.ndarray, prep: Prepared, density: float) -> dict:
    """Quality verdict columns of one image (clinical-rules §5): ``quality`` gradable|ungradable, the reason of
    the first failing check, flags, cautions and every measure (``q_*``, rounded for the CSV)."""
    try:
        report = assess_quality(rgb, prep.fov_mask, prep.circle.diameter_px, vessel_density=density)
    except Exception as exc:  # the masks are still worth writing; the verdict says why it is missing
        return {"quality": "not_assessed", "quality_reason": f"quality_error: {type(exc).__name__}: {exc}"}
    cols = {"quality": "gradable" if report.gradable else "ungradable", "quality_reason": report.reason,
            "quality_flags": ";".join(sorted(report.flags)), "quality_cautions": ";".join(report.cautions)}
    for key, value in report.measures.as_dict().items():
        if key in QUALITY_FIELDS:
            cols[key] = "" if value is None or value != value else round(float(value), 4)
    return cols


def _csv_bytes(rows: list[dict], fields: list[str]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def finish_item(loaded: Loaded, prob_canvas: np.ndarray, threshold: float, out_dir: Path, inference_ms: float,
                save_probabilities: bool, overlay: bool, extras: dict[str, ModelOutput] | None = None,
                hint_config: HintConfig = HintConfig(), av_graph_config: AvGraphConfig = AvGraphConfig(),
                biomarker_config: BiomarkerConfig = BiomarkerConfig()) -> dict:
    """Map the canvas probabilities back to the input grid, threshold, find haemorrhages and the hint, label arteries
    and veins and measure biomarkers, write outputs; return the finished row. ``extras``: outputs of the further
    models that ran ("hemorrhage", "av"); without "hemorrhage" the hint is NOT_ASSESSED."""
    row = dict(loaded.row)
    extras = extras or {}
    try:
        t0 = time.perf_counter()
        prep = loaded.prepared
        image_id = loaded.item.image_id
        back = lambda name, c=0: from_canvas(np.ascontiguousarray(extras[name].prob_canvas[c], np.float32),
                                             loaded.extra_prepared[name].transform)
        prob = from_canvas(prob_canvas.astype(np.float32), prep.transform)
        mask = probs_to_mask(prob, threshold, prep.fov_mask)
        density = vessel_density(mask, prep.fov_mask)
        quality = quality_columns(loaded.rgb, prep, density)
        outputs = [("mask", mask.astype(np.uint8) * 255)]
        if overlay:
            outputs.append(("overlay", vessel_overlay(loaded.rgb, mask, prep.circle)))
        if save_probabilities:
            outputs.append(("probability", prob_to_uint8(prob)))
        geometry = locate_geometry(loaded.rgb, prep, prob) if extras else None
        findings_cols, av_cols = not_run_columns(HEMORRHAGE_NOT_RUN), {}
        if "hemorrhage" in extras:
            h = extras["hemorrhage"]
            h_prob = back("hemorrhage")
            found = hemorrhage_findings(image_id, loaded.rgb, prep, prob, h_prob, h.threshold, quality, hint_config,
                                        geometry)
            findings_cols = found.columns
            outputs += [("hemorrhage_mask", found.mask.astype(np.uint8) * 255), ("findings", found.findings)]
            if overlay:
                g, fovea = found.geometry, found.axes.fovea_xy
                outputs.append(("hemorrhage_overlay", hemorrhage_overlay(
                    loaded.rgb, found.mask, (g.disc_x, g.disc_y) if g.disc_found else None,
                    g.measured_disc_diameter_px if np.isfinite(g.measured_disc_diameter_px) else g.disc_diameter_px,
                    fovea, fovea is not None and not g.fovea_found)))
            if save_probabilities:
                outputs.append(("hemorrhage_probability", prob_to_uint8(h_prob)))
        if "av" in extras:
            av = av_outputs(image_id, prep, mask, prob, back("av", 1), back("av", 2), geometry[0], quality, threshold,
                            av_graph_config, biomarker_config)
            av_cols = av.columns
            outputs += [("av_map", av.colour), ("segments", av.segments)]
            if overlay:
                outputs.append(("av_overlay", av_overlay(loaded.rgb, av.label_map)))
        t1 = time.perf_counter()
        folder = item_dir(image_id)
        written = []
        # encode everything first, so an encoding failure replaces none of an earlier run's outputs
        encoded = [(folder / OUTPUT_NAMES[key], _csv_bytes(data, CSV_OUTPUTS[key]) if key in CSV_OUTPUTS
                    else encode_image(data, Path(OUTPUT_NAMES[key]).suffix)) for key, data in outputs]
        for rel, data in encoded:
            write_bytes_atomic(confined_path(out_dir, rel), data)
            written.append(rel.as_posix())
        t2 = time.perf_counter()
        ms = {f"{name}_inference_ms": round(extras[name].inference_ms, 1) if name in extras else ""
              for name in EXTRA_STAGES}
        row.update(status="ok", reason="", **quality, **findings_cols, **av_cols, **ms,
                   vessel_density=round(density, 5), vessel_threshold=round(threshold, 4),
                   inference_ms=round(inference_ms, 1), postprocess_ms=round((t1 - t0) * 1e3, 1),
                   write_ms=round((t2 - t1) * 1e3, 1), outputs=";".join(written),
                   **{k: round(v, 1) for k, v in loaded.timings.items()})
    except Exception as exc:
        row.update(status="failed", reason=f"postprocess_or_write_error: {type(exc).__name__}: {exc}")
    return row
