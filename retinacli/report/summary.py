"""run_summary.json: what ran, with which model, how many inputs ended how, and how long each stage took."""
from __future__ import annotations

import json
import platform
from pathlib import Path

from retinacli import __version__
from retinacli.io.write import write_text_atomic

STAGES = ("decode_ms", "preprocess_ms", "inference_ms", "hemorrhage_inference_ms", "postprocess_ms", "write_ms")


def hint_summary(rows: list[dict]) -> dict:
    """Counts by hint headline and quality verdict, and the images that need urgent human review first
    (H_LARGE_OR_PRERETINAL, clinical-rules §9)."""
    headlines: dict[str, int] = {}
    quality: dict[str, int] = {}
    for r in rows:
        if r.get("status") != "ok":
            continue
        h = r.get("dr_hint_headline") or "none"
        headlines[h] = headlines.get(h, 0) + 1
        q = r.get("quality") or "none"
        quality[q] = quality.get(q, 0) + 1
    urgent = [r["image_id"] for r in rows if "H_LARGE_OR_PRERETINAL" in str(r.get("dr_hint_codes", "")).split(";")]
    return {"urgent_review_H_LARGE_OR_PRERETINAL": urgent, "dr_hint_headlines": headlines, "quality": quality,
            "note": "hints are lower bounds from haemorrhage findings only; not a diagnosis"}


def build_summary(rows: list[dict], models: dict, backend: str, started_utc: str, finished_utc: str,
                  wall_s: float, interrupted: bool, processed: int, extra: dict | None = None) -> dict:
    """``models``: {"vessels": {...}, "hemorrhage": {...}}; ``processed``: inputs worked on in this run (resumed
    ones excluded), for images_per_second."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    stage_totals = {s: round(sum(float(r[s]) for r in rows if r.get(s) not in ("", None)) / 1e3, 3) for s in STAGES}
    return {
        "retina_version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "started_utc": started_utc,
        "finished_utc": finished_utc,
        "interrupted": interrupted,
        "wall_seconds": round(wall_s, 3),
        "processed_this_run": processed,
        "images_per_second": round(processed / wall_s, 3) if wall_s > 0 else None,
        "counts": {"inputs": len(rows), **counts},
        "stage_seconds_total": {k.replace("_ms", ""): v for k, v in stage_totals.items()},
        "backend": backend,
        "models": models,
        "hints": hint_summary(rows),
        **(extra or {}),
    }


def write_summary(summary: dict, path: Path) -> None:
    write_text_atomic(path, json.dumps(summary, indent=2, default=str))
