"""Integration tests on the real datasets in ../shared/datasets (skipped when absent) and the shipped model."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retinacli.io.decode import decode_image, read_mask
from retinacli.preprocess.fov import estimate_fov_mask, fov_circle

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "datasets"
MODEL = ROOT / "engines" / "vessels"

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/datasets not present (real-data tests need it)")
needs_model = pytest.mark.skipif(not (MODEL / "metadata.json").exists(), reason="shipped model engines/vessels absent")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@needs_data
def test_dataset_readers_match_the_documented_splits():
    from retinacli.train.datasets import read_spec

    assert len(read_spec(f"drive:{DATA / 'DRIVE'}:training")) == 20
    assert len(read_spec(f"drive:{DATA / 'DRIVE'}:test")) == 20
    chase_test = read_spec(f"chase:{DATA / 'CHASEDB1'}:test")
    assert [s.image.stem for s in chase_test] == [f"Image_{n}{e}" for n in (11, 12, 13, 14) for e in "LR"]
    assert len(read_spec(f"chase:{DATA / 'CHASEDB1'}:train")) == 20
    hrf_train = read_spec(f"hrf:{DATA / 'HRF-AV'}:training")
    assert len(hrf_train) == 24 and len(read_spec(f"hrf:{DATA / 'HRF-AV'}:test")) == 21
    assert hrf_train[0].label_kind == "hrf_av"


@needs_data
@pytest.mark.parametrize("image,mask", [
    ("DRIVE/test/images/01_test.tif", "DRIVE/test/mask/01_test_mask.gif"),
    ("DRIVE/training/images/40_training.tif", "DRIVE/training/mask/40_training_mask.gif"),
    ("CHASEDB1/Image_14R.jpg", "CHASEDB1/mask/mask_14R.png"),
    ("HRF-AV/test/images/15_dr.JPG", "HRF-AV/test/mask/15_dr_mask.tif"),
])
def test_fov_estimate_matches_dataset_masks(image, mask):
    est = estimate_fov_mask(decode_image(DATA / image))
    gt = read_mask(DATA / mask) > 0
    assert _iou(est, gt) > 0.97
    c_est, c_gt = fov_circle(est), fov_circle(gt)
    assert abs(c_est.diameter_px - c_gt.diameter_px) < 0.02 * c_gt.diameter_px


@needs_data
def test_fov_found_on_every_other_camera():
    files = sorted((DATA / "other_cameras").rglob("*.jpg")) + sorted((DATA / "EyeQ").rglob("*.jpeg"))
    files += sorted((DATA / "IDRiD" / "C. Localization_1024px").rglob("*.jpg"))[:3]
    assert len(files) >= 10
    for f in files:
        rgb = decode_image(f)
        mask = estimate_fov_mask(rgb)
        circle = fov_circle(mask)
        assert 0.3 < mask.mean() < 0.99, f.name
        assert 0.4 * max(rgb.shape[:2]) < circle.diameter_px < 1.3 * max(rgb.shape[:2]), f.name


@needs_data
@needs_model
def test_process_drive_test_writes_20_masks(tmp_path):
    from retinacli.pipeline.config import ProcessConfig
    from retinacli.pipeline.run import EXIT_OK, process_inputs

    res = process_inputs(ProcessConfig([DATA / "DRIVE" / "test" / "images"], tmp_path / "out", MODEL, progress=False))
    assert res.exit_code == EXIT_OK
    rows = list(csv.DictReader(open(res.report_path)))
    assert len(rows) == 20 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        mask = Image.open(tmp_path / "out" / r["image_id"] / "vessels.png")
        assert mask.size == (565, 584)
        assert 0.05 < float(r["vessel_density"]) < 0.25
        assert r["quality"] == "gradable" and r["quality_reason"] == "", r  # issue 4: every DRIVE image gradable


@needs_data
@needs_model
def test_process_edge_cases_one_row_per_file_and_clear_reasons(tmp_path):
    from retinacli.pipeline.config import ProcessConfig
    from retinacli.pipeline.run import EXIT_SOME_FAILED, process_inputs

    res = process_inputs(ProcessConfig([DATA / "edge_cases"], tmp_path / "out", MODEL, progress=False))
    assert res.exit_code == EXIT_SOME_FAILED
    rows = {r["image_id"]: r for r in csv.DictReader(open(res.report_path))}
    assert len(rows) == 15
    broken = {"idrid01_truncated_50pct.jpg": "truncated", "idrid01_header_only_2kB.jpg": "truncated",
              "zero_bytes.jpg": "empty_file", "not_an_image.png": "not_an_image", "drive21_tiny_32x33.png": "too_small"}
    for name, reason in broken.items():
        assert rows[name]["status"] == "failed" and rows[name]["reason"].startswith(reason), rows[name]
    for name, r in rows.items():
        if name in broken:
            continue
        assert r["status"] == "ok", r
        w, h = Image.open(tmp_path / "out" / name / "vessels.png").size
        assert (w, h) == (int(r["width"]), int(r["height"]))
    assert rows["drive21_exif_orientation6.jpg"]["width"] == "584"  # rotated by its EXIF tag
    # quality gate (issue 4): poor and non-colour images are processed (masks for review) but ungradable
    ungradable = {"chase01L_blur_sigma12.jpg": "blur", "chase01L_underexposed_x0.15.jpg": "too_dark",
                  "chase01L_overexposed_x3.jpg": "too_bright", "drive21_grayscale_L.png": "ood_not_cfp",
                  "drive21_16bit_gray.png": "ood_not_cfp", "drive21_gray_as_rgb.jpg": "ood_not_cfp"}
    for name, code in ungradable.items():
        assert rows[name]["quality"] == "ungradable" and rows[name]["quality_reason"].startswith(code + ":"), rows[name]
    for name in ("drive21_cmyk.jpg", "drive21_rgba.png", "drive21_exif_orientation6.jpg",
                 "drive21_png_with_jpg_extension.jpg"):
        assert rows[name]["quality"] == "gradable", rows[name]
    for name in broken:
        assert rows[name]["quality"] == "", rows[name]  # never decoded: no verdict, the reason says why


@needs_data
@needs_model
def test_shipped_model_quality_on_drive_sample():
    """Regression guard on 5 DRIVE test images (the full acceptance numbers come from `retina evaluate`)."""
    from retinacli.evaluate.vessels import evaluate_vessels
    from retinacli.train.datasets import read_spec

    samples = read_spec(f"drive:{DATA / 'DRIVE'}:test")[:5]
    res = evaluate_vessels({"drive5": samples}, {"shipped": MODEL}, progress=False)
    row = res.overall.iloc[0]
    assert row["AUC"] > 0.97 and row["F1"] > 0.78


@needs_data
@needs_model
def test_shipped_onnx_matches_torch_on_drive():
    pytest.importorskip("torch")
    from retinacli.export.artefact_writer import parity_canvases
    from retinacli.export.onnx_export import parity_check
    from retinacli.runtime.artefact import read_model_info

    info = read_model_info(MODEL)
    spec = info.scale_spec()
    imgs = sorted((DATA / "DRIVE" / "test" / "images").glob("*.tif"))[:3]
    # every shipped side: the model's canvas, and the smaller one DRIVE photographs actually run on
    for side, onnx in [(spec.canvas_px, info.path), *[(c.side, c.path) for c in info.extra_canvases]]:
        canv = parity_canvases(imgs, spec.at_side(side))
        assert canv.shape[2] == side
        result = parity_check(MODEL / "model.pt", onnx, canv, tolerance=1e-4)
        assert result["max_abs_diff"] <= 1e-4


@needs_data
@needs_model
def test_shipped_canvas_sides_per_camera():
    """DRIVE photographs (FOV drawn at 896 px) run on the shipped 928-px graphs; CHASE and HRF on 1056 px."""
    from retinacli.preprocess.normalise import prepare
    from retinacli.runtime.artefact import read_model_info

    spec = read_model_info(MODEL).scale_spec()
    assert spec.canvas_sides == (928, 1056)
    for rel, side in (("DRIVE/test/images/01_test.tif", 928), ("CHASEDB1/Image_11L.jpg", 1056),
                      ("HRF-AV/test/images/09_dr.JPG", 1056)):
        path = DATA / rel
        assert prepare(decode_image(path), spec).canvas.shape[:2] == (side, side), rel
