"""Work on one input: decode + prepare (before inference) and post-process + write (after). Called from
worker threads; every failure becomes a row with a reason instead of an exception."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retinacli.io.decode import DecodeError, decode_image
from retinacli.io.discover import InputItem
from retinacli.io.write import confined_path, encode_image, write_bytes_atomic
from retinacli.postprocess.quality import QualityConfig, QualityMeasures, assess_quality
from retinacli.postprocess.vessels import prob_to_uint8, probs_to_mask, vessel_density
from retinacli.preprocess.normalise import Prepared, ScaleSpec, from_canvas, prepare
from retinacli.report.overlay import vessel_overlay

QUALITY_FIELDS = ["quality", "quality_reason", "quality_flags", "quality_cautions",
                  *(f"q_{name}" for name in QualityMeasures.__dataclass_fields__ if name != "vessel_density")]
ROW_FIELDS = ["image_id", "path", "status", "reason", "width", "height", "fov_diameter_px", "fov_circle_fitted",
              *QUALITY_FIELDS, "vessel_density", "vessel_threshold", "decode_ms", "preprocess_ms", "inference_ms",
              "postprocess_ms", "write_ms", "outputs"]

# identifies the row layout and the rules behind it; part of the resume key, so rows of another layout are redone
ROW_SCHEMA = hashlib.sha256(repr((ROW_FIELDS, QualityConfig())).encode()).hexdigest()[:12]

OUTPUT_NAMES = {"mask": "vessels.png", "overlay": "vessels_overlay.jpg", "probability": "vessel_probability.png"}


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


def load_item(item: InputItem, spec: ScaleSpec) -> Loaded:
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
    except Exception as exc:
        return Loaded(item, failed_row(item, f"preprocess_error: {type(exc).__name__}: {exc}",
                                       width=rgb.shape[1], height=rgb.shape[0]))
    t2 = time.perf_counter()
    row = base_row(item)
    row.update(width=rgb.shape[1], height=rgb.shape[0], fov_diameter_px=round(prep.circle.diameter_px, 1),
               fov_circle_fitted=prep.circle.fitted)
    return Loaded(item, row, rgb, prep, {"decode_ms": (t1 - t0) * 1e3, "preprocess_ms": (t2 - t1) * 1e3})


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


def finish_item(loaded: Loaded, prob_canvas: np.ndarray, threshold: float, out_dir: Path, inference_ms: float,
                save_probabilities: bool, overlay: bool) -> dict:
    """Map the canvas probability back to the input grid, threshold, write outputs; return the finished row."""
    row = dict(loaded.row)
    try:
        t0 = time.perf_counter()
        prep = loaded.prepared
        prob = from_canvas(prob_canvas.astype(np.float32), prep.transform)
        mask = probs_to_mask(prob, threshold, prep.fov_mask)
        density = vessel_density(mask, prep.fov_mask)
        quality = quality_columns(loaded.rgb, prep, density)
        over = vessel_overlay(loaded.rgb, mask, prep.circle) if overlay else None
        t1 = time.perf_counter()
        folder = item_dir(loaded.item.image_id)
        written = []
        outputs = [("mask", mask.astype(np.uint8) * 255)]
        if over is not None:
            outputs.append(("overlay", over))
        if save_probabilities:
            outputs.append(("probability", prob_to_uint8(prob)))
        # encode everything first, so an encoding failure replaces none of an earlier run's outputs
        encoded = [(folder / OUTPUT_NAMES[key], encode_image(arr, Path(OUTPUT_NAMES[key]).suffix)) for key, arr in outputs]
        for rel, data in encoded:
            write_bytes_atomic(confined_path(out_dir, rel), data)
            written.append(rel.as_posix())
        t2 = time.perf_counter()
        row.update(status="ok", reason="", **quality, vessel_density=round(density, 5), vessel_threshold=round(threshold, 4),
                   inference_ms=round(inference_ms, 1), postprocess_ms=round((t1 - t0) * 1e3, 1),
                   write_ms=round((t2 - t1) * 1e3, 1), outputs=";".join(written),
                   **{k: round(v, 1) for k, v in loaded.timings.items()})
    except Exception as exc:
        row.update(status="failed", reason=f"postprocess_or_write_error: {type(exc).__name__}: {exc}")
    return row
