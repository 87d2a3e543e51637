"""Haemorrhage model, dataset reader, lesion-level metrics, evaluation, training CLI and report columns."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import DATASETS, REPO_ROOT, draw_fundus, make_folder_dataset, requires_data, write_rgb
from retinacli.cli import app
from retinacli.evaluate.lesion_detection import LesionDetection, lesion_detection, size_band_of
from retinacli.io.decode import decode_image
from retinacli.pipeline.findings import FINDINGS_FIELDS, hemorrhage_findings, not_run_columns
from retinacli.postprocess.grade_hints import HintConfig
from retinacli.preprocess.normalise import ScaleSpec, prepare
from retinacli.report.summary import hint_summary
from retinacli.train.augment import AugmentConfig, PositiveIndex, sample_patch
from retinacli.train.config import TrainConfig
from retinacli.train.datasets import Sample, load_label, read_idrid_hemorrhage

IDRID_SEG = DATASETS / "IDRiD" / "A. Segmentation"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# ---------------------------------------------------------------- model

def test_hemorrhage_unet_reads_only_the_green_channel():
    import torch

    from retinacli.models.registry import MODEL_TASKS, create_model

    torch.manual_seed(0)
    m = create_model("hemorrhage_unet", channels=(4, 8)).eval()
    x = torch.randn(2, 3, 32, 32)
    y = x.clone()
    y[:, 0] += 5.0
    y[:, 2] -= 3.0
    with torch.no_grad():
        a, b = m(x), m(y)
        z = x.clone()
        z[:, 1] += 1.0
        c = m(z)
    assert a.shape == (2, 1, 32, 32)
    assert torch.equal(a, b)            # red and blue are ignored
    assert not torch.allclose(a, c)     # green is not
    assert MODEL_TASKS["hemorrhage_unet"] == "hemorrhage"


# ---------------------------------------------------------------- lesion-level metrics

def _square(mask, x, y, side):
    mask[y:y + side, x:x + side] = True


def test_lesion_detection_counts_hits_misses_and_false_positives():
    label = np.zeros((100, 100), bool)
    _square(label, 5, 5, 12)     # 144 px: large, hit
    _square(label, 40, 40, 3)    # 9 px: small, hit by one pixel
    _square(label, 70, 70, 11)   # 121 px: large, missed
    pred = np.zeros_like(label)
    _square(pred, 10, 10, 4)
    pred[41, 41] = True
    _square(pred, 80, 5, 5)      # false positive (25 px)
    pred[95, 95] = True          # 1-px speckle: a false positive only when speckle is kept
    d = lesion_detection(pred, label, min_gt_area_px=100)
    assert d == LesionDetection(gt_components=3, gt_detected=2, gt_large_components=2, gt_large_detected=1,
                                pred_components=4, fp_components=2, gt_by_size=(2, 0, 0, 0),
                                detected_by_size=(1, 0, 0, 0))  # 144 and 121 px are in the 100-300 px band
    d4 = lesion_detection(pred, label, min_gt_area_px=100, min_pred_area_px=4)
    assert (d4.pred_components, d4.fp_components, d4.gt_detected) == (2, 1, 1)  # the 1-px hit is speckle too
    # the threshold is strict: a 100-px component is not "larger than 100 px"
    label2 = np.zeros((30, 30), bool)
    _square(label2, 0, 0, 10)
    assert lesion_detection(np.zeros_like(label2), label2, min_gt_area_px=100).gt_large_components == 0
    region = np.zeros_like(label)
    region[:50, :50] = True
    dr = lesion_detection(pred, label, region)
    assert (dr.gt_components, dr.pred_components, dr.fp_components) == (2, 2, 0)
    assert (d + dr).gt_components == 5
    with pytest.raises(ValueError):
        lesion_detection(pred[:50], label)


def test_lesion_recall_by_size_bands():
    label = np.zeros((200, 200), bool)
    _square(label, 0, 0, 10)       # 100 px: in no band (the bands start above 100 px)
    _square(label, 20, 0, 11)      # 121 px: 100-300
    _square(label, 40, 0, 17)      # 289 px: 100-300
    _square(label, 0, 40, 18)      # 324 px: 300-1000
    _square(label, 40, 40, 40)     # 1600 px: 1000-3000
    _square(label, 100, 100, 60)   # 3600 px: > 3000
    pred = np.zeros_like(label)
    pred[5, 45] = pred[50, 50] = pred[120, 120] = True  # hits the 289-, 1600- and 3600-px components (row, col)
    d = lesion_detection(pred, label)
    assert d.gt_by_size == (2, 1, 1, 1) and d.detected_by_size == (1, 0, 1, 1)
    r = (d + d).recall_by_size()
    assert list(r) == ["100-300px", "300-1000px", "1000-3000px", ">3000px"]
    assert r["100-300px"] == 0.5 and r["300-1000px"] == 0.0 and r[">3000px"] == 1.0
    assert np.isnan(LesionDetection().recall_by_size()["100-300px"])
    row = d.as_dict()
    assert row["gt_components_100-300px"] == 2 and row["gt_detected_>3000px"] == 1
    assert all(not isinstance(v, tuple) for v in row.values())
    assert list(size_band_of(np.array([1, 100, 101, 300, 301, 3000, 3001]))) == [-1, -1, 0, 0, 1, 2, 3]


def test_lesion_detection_empty_images():
    z = np.zeros((20, 20), bool)
    assert lesion_detection(z, z) == LesionDetection()


# ---------------------------------------------------------------- training data

def test_positive_fraction_centres_patches_on_the_label():
    rng = np.random.default_rng(0)
    img = np.full((200, 200, 3), 120, np.uint8)
    fov = np.ones((200, 200), bool)
    label = np.zeros((200, 200), np.float32)
    label[150:157, 30:37] = 1
    cfg = AugmentConfig(scale_min=1.0, scale_max=1.0, blur_prob=0.0)
    centre_hits = [sample_patch(img, label, fov, 32, rng, cfg, positive_fraction=1.0)[1][15:18, 15:18].max()
                   for _ in range(20)]  # the centre is a label pixel (within the warp's half-pixel rounding)
    assert all(v == 1 for v in centre_hits)
    uniform = [sample_patch(img, label, fov, 32, rng, cfg)[1].max() for _ in range(40)]
    assert sum(uniform) < 10  # a 49-px target is rarely in a uniformly placed patch


def _big_and_small_lesion() -> np.ndarray:
    """float32 [200, 200]: one 40x40 lesion (1600 px) and one 2x2 lesion (4 px)."""
    label = np.zeros((200, 200), np.float32)
    label[20:60, 20:60] = 1
    label[150:152, 150:152] = 1
    return label


def test_positive_index_groups_pixels_by_component():
    index = PositiveIndex.from_label(_big_and_small_lesion())
    assert index.n_components == 2
    assert list(np.diff(index.starts)) in ([1600, 4], [4, 1600])
    for k in range(2):  # each component's entries are one connected block of the label
        members = index.order[index.starts[k]:index.starts[k + 1]]
        ys, xs = index.ys[members], index.xs[members]
        assert (ys.max() - ys.min(), xs.max() - xs.min()) in ((39, 39), (1, 1))
    ys, xs = np.nonzero(_big_and_small_lesion())  # "pixel" draws index the row-major pixel list, as before
    assert np.array_equal(index.ys, ys) and np.array_equal(index.xs, xs)
    empty = PositiveIndex.from_label(np.zeros((10, 10), np.uint8))
    assert empty.n_components == 0
    with pytest.raises(ValueError):
        empty.draw(np.random.default_rng(0))


def test_component_sampling_draws_small_lesions_as_often_as_large_ones():
    index = PositiveIndex.from_label(_big_and_small_lesion())
    rng = np.random.default_rng(1)
    small = lambda mode: np.mean([index.draw(rng, mode)[0] >= 150 for _ in range(2000)])
    assert small("pixel") < 0.01            # 4 of 1604 pixels: ~0.25%
    assert 0.45 < small("component") < 0.55  # one of two components
    with pytest.raises(ValueError):
        index.draw(rng, "lesion")


def test_sample_patch_component_mode_centres_on_the_small_lesion_half_the_time():
    img = np.full((200, 200, 3), 120, np.uint8)
    fov = np.ones((200, 200), bool)
    label = _big_and_small_lesion()
    cfg = AugmentConfig(scale_min=1.0, scale_max=1.0, rotate=False, flip=False, blur_prob=0.0)
    rng = np.random.default_rng(2)
    hits = [sample_patch(img, label, fov, 16, rng, cfg, positive_fraction=1.0, positive_sampling="component")[1]
            for _ in range(200)]
    small_centred = np.mean([h.sum() <= 4 for h in hits])  # a 16-px patch on the 40x40 lesion holds > 4 label px
    assert 0.35 < small_centred < 0.65
    with pytest.raises(ValueError):
        sample_patch(img, label, fov, 16, rng, cfg, positive_sampling="lesion")


def test_train_config_rejects_an_unknown_positive_sampling(tmp_path):
    with pytest.raises(ValueError, match="positive_sampling"):
        TrainConfig(data=[], run_dir=tmp_path, positive_sampling="lesion")
    with pytest.raises(ValueError, match="positive_fraction"):
        TrainConfig(data=[], run_dir=tmp_path, positive_fraction=1.5)


def test_sample_without_label_is_background(tmp_path):
    s = Sample("x/a", tmp_path / "a.png", None, None)
    assert not load_label(s, (5, 7)).any() and load_label(s, (5, 7)).shape == (5, 7)
    with pytest.raises(ValueError):
        load_label(s)


@requires_data
def test_idrid_reader_official_split():
    if not IDRID_SEG.exists():
        pytest.skip("IDRiD segmentation set not present")
    train, test = read_idrid_hemorrhage(IDRID_SEG, "train"), read_idrid_hemorrhage(IDRID_SEG, "test")
    assert (len(train), len(test)) == (54, 27)
    assert {s.sample_id for s in train}.isdisjoint({s.sample_id for s in test})
    no_label = [s.sample_id for s in train if s.label is None]
    assert no_label == ["idrid/IDRiD_43"]  # the one training image without a haemorrhage file
    assert all(s.label is not None for s in test)
    lab = load_label(test[0])
    assert lab.shape == (2848, 4288) and lab.any()


# ---------------------------------------------------------------- findings and hint columns

@pytest.fixture(scope="module")
def retina_example():
    rgb = decode_image(REPO_ROOT / "examples" / "skimage_retina.jpg")
    return rgb, prepare(rgb, ScaleSpec(672, 640))


def _blob_prob(shape, centres, radius):
    prob = np.zeros(shape, np.float32)
    for x, y in centres:
        cv2.circle(prob, (x, y), radius, 0.9, -1)
    return prob


def test_findings_count_blobs_and_hint_fires(retina_example):
    rgb, prep = retina_example
    centres = [(400, 400), (1000, 420), (420, 1000), (1000, 1000), (700, 300)]
    prob = _blob_prob(rgb.shape[:2], centres, 10)
    found = hemorrhage_findings("ex.jpg", rgb, prep, None, prob, 0.5, {"quality": "gradable"})
    c = found.columns
    assert c["hemorrhage_assessed"] is True and c["hemorrhage_count"] == 5
    assert c["hemorrhage_area_px"] == int(found.mask.sum())
    assert sum(int(kv.split("=")[1]) for kv in c["hemorrhage_per_quadrant"].split(";")) <= 5
    assert "H_PRESENT" in c["dr_hint_codes"].split(";") and c["hint_is_lower_bound"] is True
    assert c["hint_basis"].startswith(c["dr_hint_headline"])
    assert len(found.findings) == 5 and set(found.findings[0]) == set(FINDINGS_FIELDS)
    assert all(r["kind"] == "haemorrhage" for r in found.findings)
    fx, fy = found.axes.fovea_xy
    on_fovea = hemorrhage_findings("ex.jpg", rgb, prep, None, _blob_prob(rgb.shape[:2], [(int(fx), int(fy))], 10), 0.5,
                                   {"quality": "gradable"}).findings
    assert [r["covers_fovea_centre"] for r in on_fovea] == [True]
    assert not any(r["covers_fovea_centre"] for r in found.findings)
    for text in (c["dr_hint_text"], c["hint_basis"]):
        assert "No DR" not in text and "diagnosis" not in text.lower()


def test_findings_none_detected_and_ungradable(retina_example):
    rgb, prep = retina_example
    empty = np.zeros(rgb.shape[:2], np.float32)
    none = hemorrhage_findings("ex.jpg", rgb, prep, None, empty, 0.5, {"quality": "gradable"}).columns
    assert none["dr_hint_headline"] == "H_NONE_DETECTED" and none["hemorrhage_count"] == 0
    assert "DR not excluded" in none["dr_hint_text"]
    prob = _blob_prob(rgb.shape[:2], [(500, 500)], 12)
    bad = hemorrhage_findings("ex.jpg", rgb, prep, None, prob, 0.5,
                              {"quality": "ungradable", "quality_reason": "too_dark: x"})
    assert bad.columns["dr_hint_headline"] == "NOT_ASSESSED" and "too_dark" in bad.columns["dr_hint_text"]
    assert bad.columns["hemorrhage_assessed"] is False and bad.columns["hemorrhage_count"] == ""
    assert bad.mask.any()  # the mask is still produced for review
    # a threshold just above the blob's probability finds nothing
    assert hemorrhage_findings("ex.jpg", rgb, prep, None, prob, 0.95, {"quality": "gradable"}).columns[
        "hemorrhage_count"] == 0


def test_min_component_area_drops_speckle(retina_example):
    rgb, prep = retina_example
    prob = np.zeros(rgb.shape[:2], np.float32)
    prob[600:602, 600:602] = 1.0  # 4 px
    assert hemorrhage_findings("e", rgb, prep, None, prob, 0.5, {"quality": "gradable"},
                               HintConfig(min_component_area_px=5)).columns["hemorrhage_count"] == 0
    assert hemorrhage_findings("e", rgb, prep, None, prob, 0.5, {"quality": "gradable"},
                               HintConfig(min_component_area_px=4)).columns["hemorrhage_count"] == 1


def test_not_run_columns_say_why():
    c = not_run_columns("haemorrhage model not run (--no-hemorrhage)")
    assert c["dr_hint_headline"] == "NOT_ASSESSED" and "not run" in c["dr_hint_text"]
    assert c["hemorrhage_count"] == "" and c["hemorrhage_assessed"] is False


def test_hint_summary_lists_urgent_images_first():
    rows = [{"image_id": "a", "status": "ok", "dr_hint_headline": "H_LARGE_OR_PRERETINAL",
             "dr_hint_codes": "H_LARGE_OR_PRERETINAL;H_PRESENT", "quality": "gradable"},
            {"image_id": "b", "status": "ok", "dr_hint_headline": "NOT_ASSESSED", "dr_hint_codes": "NOT_ASSESSED",
             "quality": "ungradable"},
            {"image_id": "c", "status": "failed"}]
    s = hint_summary(rows)
    assert s["urgent_review_H_LARGE_OR_PRERETINAL"] == ["a"]
    assert s["dr_hint_headlines"] == {"H_LARGE_OR_PRERETINAL": 1, "NOT_ASSESSED": 1}
    assert s["quality"] == {"gradable": 1, "ungradable": 1}


# ---------------------------------------------------------------- CLI: train, evaluate, process

def _he_folder(root: Path, n: int = 3) -> Path:
    """A folder dataset whose masks are small dark blobs painted into the images."""
    for i in range(n):
        rgb = draw_fundus(120, 128, seed=10 + i)
        mask = np.zeros(rgb.shape[:2], np.uint8)
        for k in range(3):
            cv2.circle(mask, (40 + 20 * k, 50 + 10 * i), 4, 255, -1)
        rgb[mask > 0] = (rgb[mask > 0] * 0.4).astype(np.uint8)
        write_rgb(root / "images" / f"h{i}.png", rgb)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "masks" / f"h{i}.png"), mask)
    return root


def test_train_hemorrhage_then_evaluate(tmp_path):
    data = _he_folder(tmp_path / "he")
    run = tmp_path / "run"
    res = invoke("train", "hemorrhage", "-d", f"folder:{data}", "--run-dir", run, "--epochs", "1",
                 "--steps-per-epoch", "2", "--batch-size", "2", "--patch-px", "32", "--channels", "4,8",
                 "--canvas-px", "96", "--fov-diameter-px", "88", "--val-every", "3", "--threads", "1",
                 "--positive-sampling", "component")
    assert res.exit_code == 0, res.output
    import torch

    ck = torch.load(run / "model.pt", map_location="cpu", weights_only=False)
    assert ck["task"] == "hemorrhage" and ck["model"]["name"] == "hemorrhage_unet"
    config = json.loads((run / "config.json").read_text())
    assert config["positive_fraction"] == 0.5 and config["positive_sampling"] == "component"
    assert "val_aupr" in (run / "metrics.csv").read_text().splitlines()[0]
    out_csv = tmp_path / "ev" / "he.csv"
    res = invoke("evaluate", "hemorrhage", "-d", f"folder:{data}", "-m", f"h={run / 'model.pt'}", "--out-csv", out_csv)
    assert res.exit_code == 0, res.output
    per = pd.read_csv(out_csv)
    overall = pd.read_csv(out_csv.with_name("he_overall.csv"))
    assert len(per) == 3 and {"AUPR", "F1", "lesion_recall", "fp_components"} <= set(per.columns)
    assert overall.loc[0, "gt_components"] == 9 and 0 <= overall.loc[0, "AUPR"] <= 1
    assert "lesion recall by ground-truth component size" in res.output and "lesion_recall_>3000px" in overall


def test_train_hemorrhage_unknown_positive_sampling_exits_2(tmp_path):
    res = invoke("train", "hemorrhage", "-d", f"folder:{tmp_path}", "--run-dir", tmp_path / "run",
                 "--positive-sampling", "lesion")
    assert res.exit_code == 2 and "positive_sampling" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "run").exists()


def test_evaluate_hemorrhage_bad_dataset_exits_2(tiny_hemorrhage_dir, tmp_path):
    res = invoke("evaluate", "hemorrhage", "-d", f"idrid:{tmp_path / 'none'}:test", "-m", tiny_hemorrhage_dir)
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_process_with_and_without_hemorrhage(tiny_model_dir, tiny_hemorrhage_dir, tmp_path):
    scans = tmp_path / "scans"
    write_rgb(scans / "a.png", draw_fundus(120, 140, seed=3))
    out = tmp_path / "out"
    res = invoke("process", scans, "--out", out, "--model", tiny_model_dir, "-q", "--no-hemorrhage", "--no-av")
    assert res.exit_code == 0, res.output
    row = next(csv.DictReader((out / "report.csv").open()))
    assert row["dr_hint_headline"] == "NOT_ASSESSED" and "not run" in row["hint_basis"]
    assert not (out / "a.png" / "hemorrhages.png").exists()
    res = invoke("process", scans, "--out", out, "--model", tiny_model_dir, "-q", "--hemorrhage-model",
                 tiny_hemorrhage_dir, "--save-probabilities", "--no-av")
    assert res.exit_code == 0, res.output
    row = next(csv.DictReader((out / "report.csv").open()))
    assert row["status"] == "ok" and row["dr_hint_headline"] not in ("", None)
    assert row["hemorrhage_threshold"] == "0.5" and row["hint_is_lower_bound"] == "True"
    for name in ("hemorrhages.png", "hemorrhage_findings.csv", "hemorrhage_probability.png", "hemorrhages_overlay.jpg"):
        assert name in row["outputs"] and (out / "a.png" / name).exists()
    mask = cv2.imread(str(out / "a.png" / "hemorrhages.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (120, 140)
    header = (out / "a.png" / "hemorrhage_findings.csv").read_text().splitlines()[0].split(",")
    assert header == FINDINGS_FIELDS
    summary = json.loads((out / "run_summary.json").read_text())
    assert set(summary["models"]) == {"vessels", "hemorrhage"} and "hints" in summary


def test_missing_shipped_optional_model_skips_its_stage_with_a_note(tiny_model_dir, tmp_path, monkeypatch):
    import retinacli.cli.process_cmd as pc

    real = pc.default_model_dir
    monkeypatch.setattr(pc, "default_model_dir", lambda name: real(name) if name == "vessels" else tmp_path / "none")
    scans = tmp_path / "scans"
    write_rgb(scans / "a.png", draw_fundus(120, 140, seed=3))
    res = invoke("process", scans, "--out", tmp_path / "out", "--model", tiny_model_dir, "-q")
    assert res.exit_code == 0, res.output
    assert "no shipped hemorrhage model" in res.output and "no shipped av model" in res.output
    row = next(csv.DictReader((tmp_path / "out" / "report.csv").open()))
    assert row["dr_hint_headline"] == "NOT_ASSESSED"
    # a model the user names must exist
    res = invoke("process", scans, "--out", tmp_path / "out2", "--model", tiny_model_dir, "-q", "--no-av",
                 "--hemorrhage-model", tmp_path / "missing")
    assert res.exit_code == 2
