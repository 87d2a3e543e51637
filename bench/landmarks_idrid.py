"""Benchmark: optic-disc / fovea locator accuracy on IDRiD (segmentation test OD masks + localisation test set).

Prints, per set: mean distance (px in the GT frame, and in disc diameters), the share within 0.25 DD
(disc) / 0.5 DD (fovea), found rates, the locator's own DD against the reference, seconds per image
(FOV + vessel model + locator, decode excluded), and the images that miss.

    python bench/landmarks_idrid.py [--datasets ../shared/datasets] [--model engines/vessels | --no-vessels]
        [--sets seg-test,loc-test] [--csv per_image.csv] [--half all|dev|holdout]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from retinacli.evaluate.landmarks import (evaluate_landmarks, read_idrid_localisation, read_idrid_segmentation,
                                          reference_dd_px, summarise)

ROOT = Path(__file__).resolve().parent.parent


def select_half(cases: list, half: str) -> list:
    """Cases whose IDRiD number is odd (half "dev"), even ("holdout") or all of them ("all")."""
    if half == "all":
        return cases
    odd = half == "dev"
    return [c for c in cases if (int(c.image_id.rsplit("_", 1)[1]) % 2 == 1) == odd]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--model", type=Path, default=ROOT / "engines" / "vessels")
    ap.add_argument("--no-vessels", action="store_true", help="use the black-hat vessel proxy, not the model")
    ap.add_argument("--sets", default="seg-test,loc-test", help="comma list of seg-train, seg-test, loc-test")
    ap.add_argument("--csv", type=Path, default=None, help="write the per-image rows here")
    ap.add_argument("--half", choices=("all", "dev", "holdout"), default="all",
                    help="loc-test only: dev = odd image numbers (52), holdout = even (51). The localisation TEST "
                         "set is the only fovea ground truth here: develop on dev, report holdout and all")
    args = ap.parse_args()
    idrid = args.datasets / "IDRiD"
    model = None if args.no_vessels else args.model
    ref_dd = reference_dd_px(idrid, 1024)
    print(f"vessel cue: {model or 'black-hat proxy'}; CPU threads visible: {os.cpu_count()}")
    print(f"reference DD for the localisation set: {ref_dd:.1f} px at 1024 px width "
          "(mean equivalent-circle diameter of the 54 IDRiD segmentation training OD masks x 1024/4288)")
    frames = []
    for name in args.sets.split(","):
        if name == "loc-test":
            cases, ref = select_half(read_idrid_localisation(idrid), args.half), ref_dd
        else:
            cases, ref = read_idrid_segmentation(idrid, "training" if name == "seg-train" else "test"), float("nan")
        df = evaluate_landmarks(cases, model, ref_dd_px=ref, progress=True)
        df.insert(0, "set", name)
        frames.append(df)
        print(f"\n== {name}: {len(df)} images ==")
        for k, v in summarise(df).items():
            print(f"  {k:32s} {v:10.3f}")
        miss = df[(df.disc_err_dd > 0.25) | df.disc_err_dd.isna()]
        for _, r in miss.iterrows():
            print(f"  disc miss {r.image}: {r.disc_err_dd:.2f} DD ({r.disc_err_px:.0f} px) {r.reason}")
        if df.fovea_err_px.notna().any():
            miss = df[(df.fovea_err_dd > 0.5) | df.fovea_err_dd.isna()]
            for _, r in miss.iterrows():
                print(f"  fovea miss {r.image}: {r.fovea_err_dd:.2f} DD ({r.fovea_err_px:.0f} px) "
                      f"found={r.fovea_found} {r.reason}")
    if args.csv:
        pd.concat(frames).to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
