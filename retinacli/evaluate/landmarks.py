"""Optic-disc / fovea locator evaluation on the IDRiD layouts (A. Segmentation OD masks, C. Localization).

Distances are measured in each dataset's ground-truth frame (IDRiD segmentation: 4288x2848 originals;
localisation: the 1024x680 files, CSV coordinates x 1024/4288) and expressed in px and in disc diameters:
- segmentation set: GT disc centre = centroid of the OD mask, GT DD = equivalent-circle diameter of the
  mask, sqrt(4 * area / pi);
- localisation set (no masks): DD = ``reference_dd_px``, by default the mean equivalent-circle diameter
  of the 54 IDRiD segmentation TRAINING OD masks (same camera) scaled to the 1024 px width. The locator's
  own DD estimate is reported alongside.

Large images are decoded reduced (JPEG DCT scaling, factor 2/4/8) so the longer side is >= ``max_side``;
the locator's answer is mapped back to the GT frame.

Coordinates are continuous pixel coordinates everywhere (pixel column i covers [i, i+1), its centre is i + 0.5),
the convention of ``preprocess.fov``, ``fundus_geometry`` and the locator's output:
- a mask centroid is the mean pixel index + 0.5;
- ASSUMPTION: the IDRiD localisation CSVs give continuous coordinates in the 4288x2848 original frame, so they
  scale to the 1024 px files by the width ratio alone (no half-pixel shift); likewise a reduced decode maps
  back by multiplying by its factor (each reduced pixel averages a factor x factor block).
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from retinacli.io.decode import read_mask
from retinacli.postprocess.disc_fovea import DiscFovea, locate_disc_fovea
from retinacli.preprocess.fov import estimate_fov

SEG_IMAGES = "A. Segmentation/1. Original Images"
SEG_MASKS = "A. Segmentation/2. All Segmentation Groundtruths"
SEG_SPLITS = {"training": "a. Training Set", "test": "b. Testing Set"}
LOC_ROOT = "C. Localization_1024px"
LOC_ORIGINAL_WIDTH = 4288


@dataclass(frozen=True)
class LandmarkCase:
    """One image with ground truth in its own pixel frame (x, y); NaN where the dataset has no label."""

    image_id: str
    image: Path
    disc_x: float
    disc_y: float
    fovea_x: float
    fovea_y: float
    dd_px: float          # ground-truth disc diameter in px (NaN: use the reference DD)


def od_mask_geometry(mask: np.ndarray) -> tuple[float, float, float]:
    """Boolean/0-255 OD mask [H, W] -> (centroid x, centroid y, equivalent-circle diameter), px.

    The centroid is in continuous coordinates (mean pixel index + 0.5), like the locator's output.
    """
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return float("nan"), float("nan"), float("nan")
    return float(xs.mean()) + 0.5, float(ys.mean()) + 0.5, float(np.sqrt(4.0 * xs.size / np.pi))


def read_idrid_segmentation(root: Path, split: str = "test") -> list[LandmarkCase]:
    """IDRiD ``A. Segmentation`` split ("training" | "test") -> cases with disc centre + DD from the OD masks."""
    sub = SEG_SPLITS[split]
    cases = []
    for img in sorted((Path(root) / SEG_IMAGES / sub).glob("IDRiD_*.jpg")):
        mask_path = Path(root) / SEG_MASKS / sub / "5. Optic Disc" / f"{img.stem}_OD.png"
        if not mask_path.exists():
            continue
        x, y, dd = od_mask_geometry(read_mask(mask_path) > 0)
        cases.append(LandmarkCase(img.stem, img, x, y, float("nan"), float("nan"), dd))
    if not cases:
        raise FileNotFoundError(f"no IDRiD segmentation images with OD masks under {root} ({sub})")
    return cases


def _read_centres(path: Path, factor: float) -> dict[str, tuple[float, float]]:
    out = {}
    with path.open(newline="") as f:
        for row in csv.reader(f):
            if len(row) < 3 or not row[0].startswith("IDRiD"):
                continue
            out[row[0].strip()] = (float(row[1]) * factor, float(row[2]) * factor)
    return out


def read_idrid_localisation(root: Path) -> list[LandmarkCase]:
    """IDRiD ``C. Localization_1024px`` test set -> cases with disc and fovea centres in the 1024 px frame.

    The CSV coordinates are taken as continuous coordinates of the 4288 px wide original, scaled by 1024 / 4288.
    """
    base = Path(root) / LOC_ROOT
    gt = base / "2. Groundtruths"
    images = sorted((base / "1. Original Images" / "b. Testing Set").glob("IDRiD_*.jpg"))
    if not images:
        raise FileNotFoundError(f"no IDRiD localisation images under {base}")
    with Image.open(images[0]) as im:
        factor = im.size[0] / LOC_ORIGINAL_WIDTH
    od = _read_centres(gt / "IDRiD_OD_Center_Testing Set_Markups.csv", factor)
    fov = _read_centres(gt / "IDRiD_Fovea_Center_Testing Set_Markups.csv", factor)
    nan = float("nan")
    return [LandmarkCase(p.stem, p, *od.get(p.stem, (nan, nan)), *fov.get(p.stem, (nan, nan)), nan)
            for p in images]


def reference_dd_px(root: Path, target_width: int = 1024) -> float:
    """Mean equivalent-circle OD diameter of the IDRiD segmentation TRAINING masks, scaled to ``target_width``."""
    cases = read_idrid_segmentation(root, "training")
    return float(np.mean([c.dd_px for c in cases])) * target_width / LOC_ORIGINAL_WIDTH


def load_reduced(path: Path, max_side: int = 1072) -> tuple[np.ndarray, float]:
    """Decode an image at 1/2, 1/4 or 1/8 size when that keeps its longer side >= max_side.

    -> (RGB uint8 [h, w, 3], factor): continuous coordinate u of the reduced image is u * factor in the
    original (pixel index i: (i + 0.5) * factor - 0.5).
    """
    with Image.open(path) as im:
        side = max(im.size)
    factor = 1
    for f, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2)):
        if side / f >= max_side:
            factor = f
            bgr = cv2.imread(str(path), flag)
            break
    else:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot decode {path}")
    return np.ascontiguousarray(bgr[..., ::-1]), float(factor)


def run_case(case: LandmarkCase, backend=None, spec=None, max_side: int = 1072) -> tuple[DiscFovea, float, float]:
    """Locate disc/fovea on one case -> (result in the reduced frame, factor, seconds for FOV+vessels+locator)."""
    rgb, factor = load_reduced(case.image, max_side)
    t0 = time.perf_counter()
    if backend is not None:
        from retinacli.evaluate.vessels import predict_full_resolution

        prob, fov = predict_full_resolution(backend, spec, rgb)
    else:
        prob, fov = None, estimate_fov(rgb)[0]
    res = locate_disc_fovea(rgb, fov, prob)
    return res, factor, time.perf_counter() - t0


def evaluate_landmarks(cases: list[LandmarkCase], vessel_model: Path | None = None, ref_dd_px: float = float("nan"),
                       max_side: int = 1072, backend: str = "auto", progress: bool = False) -> pd.DataFrame:
    """Run the locator on every case -> one row per image: distances (px, DD), flags, DDs, seconds.

    ``vessel_model``: a model folder (e.g. engines/vessels) whose probability map feeds the locator; None
    uses the black-hat vessel proxy. ``ref_dd_px``: DD for cases without a ground-truth DD.
    """
    be = spec = None
    if vessel_model is not None:
        from retinacli.runtime.artefact import create_backend, read_model_info

        info = read_model_info(vessel_model)
        be = create_backend(info, backend)
        spec = info.scale_spec()
    rows = []
    it = cases
    if progress:
        from tqdm import tqdm

        it = tqdm(cases, unit="img")
    for c in it:
        r, f, secs = run_case(c, be, spec, max_side)
        up = lambda v: v * f  # noqa: E731  reduced frame -> GT frame (continuous coordinates)
        dd_gt = c.dd_px if np.isfinite(c.dd_px) else ref_dd_px
        dd_est = r.disc_diameter_px * f
        d_disc = float(np.hypot(up(r.disc_x) - c.disc_x, up(r.disc_y) - c.disc_y))
        d_fov = float(np.hypot(up(r.fovea_x) - c.fovea_x, up(r.fovea_y) - c.fovea_y))
        rows.append({"image": c.image_id, "disc_found": r.disc_found, "fovea_found": r.fovea_found,
                     "disc_err_px": d_disc, "disc_err_dd": d_disc / dd_gt, "disc_err_dd_own": d_disc / dd_est,
                     "fovea_err_px": d_fov, "fovea_err_dd": d_fov / dd_gt, "fovea_err_dd_own": d_fov / dd_est,
                     "dd_gt_px": dd_gt, "dd_est_px": dd_est, "dd_measured_px": r.measured_disc_diameter_px * f,
                     "dd_method": r.dd_method,
                     "quadrant_method": r.quadrant_method, "reason": r.reason, "seconds": secs})
    if be is not None:
        be.close()
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> dict[str, float]:
    """Per-image rows -> summary. A disc not found counts as a miss (its distance is NaN -> not within)."""
    out: dict[str, float] = {"images": float(len(df)), "disc_found": float(df.disc_found.mean()),
                             "seconds_per_image": float(df.seconds.mean())}
    if df.disc_err_px.notna().any():
        out.update({"disc_mean_px": float(df.disc_err_px.mean()), "disc_mean_dd": float(df.disc_err_dd.mean()),
                    "disc_within_0.25dd": float((df.disc_err_dd <= 0.25).mean()),
                    "disc_within_0.25dd_own_dd": float((df.disc_err_dd_own <= 0.25).mean()),
                    "dd_est_over_gt_mean": float((df.dd_est_px / df.dd_gt_px).mean()),
                    "dd_est_abs_rel_err": float((df.dd_est_px / df.dd_gt_px - 1).abs().mean())})
    if df.fovea_err_px.notna().any():
        out.update({"fovea_found": float(df.fovea_found.mean()), "fovea_mean_px": float(df.fovea_err_px.mean()),
                    "fovea_mean_dd": float(df.fovea_err_dd.mean()),
                    "fovea_within_0.5dd": float((df.fovea_err_dd <= 0.5).mean()),
                    "fovea_within_0.5dd_own_dd": float((df.fovea_err_dd_own <= 0.5).mean()),
                    "fovea_within_0.5dd_found_only": float((df.fovea_err_dd[df.fovea_found] <= 0.5).mean())})
    return out
