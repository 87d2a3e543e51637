"""Benchmark: the second human observer scored like a model, against the first observer, on the vessel test sets.

The vessel targets (issue 2) are measured inside the dataset FOV against the first observer, pooled over pixels.
This prints what the second observer's manual segmentation scores under exactly that protocol (ACC, SE, SP, F1,
IoU; no AUC, a binary mask has no ranking), beside the figures `retina evaluate vessels` prints for a model, so a
target can be read against human agreement. DRIVE test has `2nd_manual/NN_manual2.gif` for all 20 images; CHASE_DB1
has `Image_XXY_2ndHO.png` for each of the 8 test images. HRF-AV has one observer only.

    python bench/second_observer.py [--datasets ../shared/datasets]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from retinacli.io.decode import read_mask
from retinacli.metrics import Confusion
from retinacli.train.datasets import (DatasetLayoutError, Sample, load_fov, load_vessel_label, read_chase, read_drive,
                                     second_observer_label)

ROOT = Path(__file__).resolve().parent.parent


def second_observer_confusion(samples: list[Sample]) -> tuple[Confusion, int]:
    """Pooled confusion of observer 2 against observer 1 inside each sample's FOV; (counts, images used)."""
    pooled, used = Confusion(), 0
    for sample in samples:
        path = second_observer_label(sample)
        if path is None:
            continue
        first = load_vessel_label(sample)
        second = read_mask(path) > 0
        if second.shape != first.shape:
            raise ValueError(f"{path}: shape {second.shape} differs from the first observer's {first.shape}")
        pooled.add(second, first, load_fov(sample))
        used += 1
    return pooled, used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = ap.parse_args()
    sets = {"DRIVE test": lambda: read_drive(args.datasets / "DRIVE", "test"),
            "CHASE_DB1 Image_11L-14R": lambda: read_chase(args.datasets / "CHASEDB1", "test")}
    print("second observer vs first observer, inside the dataset FOV, pooled over pixels")
    print(f"{'test set':<24} {'images':>6} {'ACC':>7} {'SE':>7} {'SP':>7} {'F1':>7} {'IoU':>7}")
    for label, read in sets.items():
        try:
            samples = read()
        except DatasetLayoutError as exc:  # a missing dataset is reported, not fatal
            print(f"{label:<24} skipped ({exc})")
            continue
        conf, used = second_observer_confusion(samples)
        m = conf.metrics()
        figures = " ".join(f"{m[k]:>7.4f}" for k in ("ACC", "SE", "SP", "F1", "IoU"))
        print(f"{label:<24} {used:>6} {figures}")


if __name__ == "__main__":
    main()
