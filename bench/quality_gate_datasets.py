"""Benchmark: the image-quality gate (retinacli.postprocess.quality) on every public dataset image.

Runs FOV estimation + ``assess_quality`` on DRIVE (40), CHASE_DB1 (28), HRF-AV (45), IDRiD segmentation (81)
and localisation (103) -- all gradable by construction -- and on EyeQ (5, one labelled), edge_cases and
other_cameras. Prints per dataset: gradable / ungradable counts with reason codes, flags, min/max of every
measure, seconds per image; then the margin of each threshold on the labelled-good sets, and one line per
image of the small sets (EyeQ with its CSV label, edge_cases, other_cameras).

Large JPEGs are decoded reduced (IDRiD seg. and EyeQ at 1/4, HRF at 1/2, OpenCV IMREAD_REDUCED_COLOR_*),
which leaves every FOV > 500 px across and the measures unchanged in meaning (they are computed at a
fixed 512 px FOV diameter). edge_cases go through the project's decoder (gray, 16-bit, CMYK, EXIF...).

    python bench/quality_gate_datasets.py [--datasets ../shared/datasets]
"""
from __future__ import annotations

import argparse
import csv
import math
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from retinacli.io.decode import DecodeError, decode_image
from retinacli.postprocess.quality import QualityConfig, QualityMeasures, assess_quality
from retinacli.preprocess.fov import estimate_fov

ROOT = Path(__file__).resolve().parent.parent
IMG_EXT = {".jpg", ".jpeg", ".tif", ".tiff", ".png", ".gif", ".bmp"}
# name, glob(s) relative to the datasets folder, cv2 reduction flag (None: project decoder), labelled good
SETS = [
    ("DRIVE", ["DRIVE/training/images/*", "DRIVE/test/images/*"], cv2.IMREAD_COLOR, True),
    ("CHASEDB1", ["CHASEDB1/Image_*.jpg"], cv2.IMREAD_COLOR, True),
    ("HRF-AV", ["HRF-AV/training/images/*", "HRF-AV/test/images/*"], cv2.IMREAD_REDUCED_COLOR_2, True),
    ("IDRiD-seg", ["IDRiD/A. Segmentation/1. Original Images/*/*.jpg"], cv2.IMREAD_REDUCED_COLOR_4, True),
    ("IDRiD-loc", ["IDRiD/C. Localization_1024px/1. Original Images/*/*.jpg"], cv2.IMREAD_COLOR, True),
    ("EyeQ", ["EyeQ/EyeQ_preprocess/original_img/*"], cv2.IMREAD_REDUCED_COLOR_4, False),
    ("edge_cases", ["edge_cases/*"], None, False),
    ("other_cameras", ["other_cameras/*/*"], None, False),
]
MEASURES = [f for f in QualityMeasures.__dataclass_fields__ if f != "vessel_density"]
# threshold field, measure, direction: "min" = measure must stay >= threshold, "max" = <= threshold
LIMITS = [("min_fov_area_share", "fov_area_share", "min"), ("min_fov_diameter_px", "fov_diameter_px", "min"),
          ("caution_fov_diameter_px", "fov_diameter_px", "min"), ("min_value_mean", "value_mean", "min"),
          ("min_green_mean", "green_mean", "min"), ("max_dark_share", "dark_share", "max"),
          ("max_saturated_share", "saturated_share", "max"), ("min_colourfulness", "colourfulness", "min"),
          ("min_red_green_ratio", "red_green_ratio", "min"),
          ("caution_illumination_ratio", "illumination_ratio", "max"),
          ("max_illumination_ratio", "illumination_ratio", "max"), ("min_focus", "focus", "min")]
REDUCTION = {cv2.IMREAD_REDUCED_COLOR_2: 2.0, cv2.IMREAD_REDUCED_COLOR_4: 4.0}


def load(path: Path, flag: int | None) -> np.ndarray:
    if flag is None:
        return decode_image(path)
    bgr = cv2.imread(str(path), flag)
    if bgr is None:
        raise DecodeError("unreadable", f"OpenCV could not read {path.name}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def eyeq_labels(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("Label_EyeQ_train.csv", "Label_EyeQ_test.csv"):
        p = root / "EyeQ" / "data" / name
        if p.exists():
            with open(p, newline="") as f:
                for row in csv.DictReader(f):
                    out[row["image"]] = {"0": "good", "1": "usable", "2": "reject"}.get(row["quality"], "?")
    return out


def fmt(v: float) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    cfg = QualityConfig()
    labels = eyeq_labels(args.datasets)
    good_measures: list[QualityMeasures] = []
    other_measures: list[QualityMeasures] = []
    t_start = time.perf_counter()
    for name, globs, flag, good in SETS:
        paths = sorted(p for g in globs for p in args.datasets.glob(g) if p.suffix.lower() in IMG_EXT)
        if not paths:
            print(f"\n== {name}: no images found")
            continue
        reasons, flags, rows, ms = Counter(), Counter(), [], []
        t_load = t_fov = t_gate = 0.0
        for p in paths:
            t0 = time.perf_counter()
            try:
                rgb = load(p, flag)
            except DecodeError as e:
                reasons[f"decode:{e.reason}"] += 1
                rows.append((p.name, f"decode error ({e.reason})", ""))
                continue
            t1 = time.perf_counter()
            mask, circle = estimate_fov(rgb)
            t2 = time.perf_counter()
            rep = assess_quality(rgb, mask, circle.diameter_px, cfg=cfg,
                                 source_fov_diameter_px=circle.diameter_px * REDUCTION.get(flag, 1.0))
            t3 = time.perf_counter()
            t_load, t_fov, t_gate = t_load + t1 - t0, t_fov + t2 - t1, t_gate + t3 - t2
            ms.append(rep.measures)
            reasons["gradable" if rep.gradable else rep.reason_code] += 1
            flags.update(rep.flags)
            verdict = "gradable" if rep.gradable else rep.reason
            if rep.cautions:
                verdict += f" [caution: {', '.join(rep.cautions)}]"
            rows.append((p.name, verdict, labels.get(p.name, ""), rep))
        n = len(ms)
        print(f"\n== {name}: {len(paths)} files, {n} decoded, {reasons.get('gradable', 0)} gradable, "
              f"{n - reasons.get('gradable', 0)} ungradable")
        print("   verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
        if flags:
            print("   flags:    " + ", ".join(f"{k} {v}" for k, v in sorted(flags.items())))
        if n:
            print(f"   s/image: load {t_load / n:.3f}, fov {t_fov / n:.3f}, gate {t_gate / n:.3f}  "
                  f"(loaded {'reduced' if flag not in (None, cv2.IMREAD_COLOR) else 'full size'})")
            for f in MEASURES:
                vals = np.array([getattr(m, f) for m in ms], float)
                print(f"   {f:>20s}  min {fmt(np.nanmin(vals))}  max {fmt(np.nanmax(vals))}")
        if name == "other_cameras":
            other_measures += ms
        if good:
            good_measures += ms
            bad = [r for r in rows if not r[1].startswith("gradable") or "caution" in r[1]]
            for r in bad:
                print(f"   !! {r[0]}: {r[1]}")
        else:
            for r in rows:
                lab = f"  [EyeQ label: {r[2] or 'not in the CSVs'}]" if name == "EyeQ" else ""
                print(f"   {r[0]}: {r[1]}{lab}")
                if len(r) > 3:
                    m = r[3].measures
                    print("      " + " ".join(f"{f}={fmt(getattr(m, f))}" for f in MEASURES[2:]))
    print_margins(cfg, good_measures, f"the labelled-good sets ({len(good_measures)} images: DRIVE, CHASE, "
                  "HRF-AV, IDRiD seg+loc)")
    print_margins(cfg, other_measures, f"other_cameras ({len(other_measures)} unlabelled, presumed gradable)")
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s (cv2 1 thread)")


def print_margins(cfg: QualityConfig, measures: list[QualityMeasures], title: str) -> None:
    """Worst value of each limited measure and its margin (x > 1: on the passing side of the limit)."""
    if not measures:
        return
    print(f"\n== margins on {title}")
    for thr, meas, kind in LIMITS:
        t = getattr(cfg, thr)
        vals = np.array([getattr(m, meas) for m in measures], float)
        worst = float(np.nanmin(vals) if kind == "min" else np.nanmax(vals))
        ratio = worst / t if kind == "min" else (t / worst if worst > 0 else float("inf"))
        print(f"   {thr:>26s} = {t:<8g} worst {meas} = {fmt(worst):<8s} margin x{ratio:.2f}")


if __name__ == "__main__":
    main()
