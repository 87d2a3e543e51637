"""A/V two-stream model, A/V label readers, A/V loss, `retina train av` and `retina evaluate av` (synthetic HRF-AV
layout), and the A/V pixel metrics."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from conftest import DATASETS, draw_fundus, requires_data, write_rgb
from retinacli.cli import app
from retinacli.evaluate.av import AvCounts, av_labels_before_after
from retinacli.postprocess.av_labels import AvGraphConfig
from retinacli.train.datasets import Sample, load_av_label, load_label, read_spec
from retinacli.train.losses import av_bce_loss


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_av_probabilities_split_the_vessel_probability():
    from retinacli.models.normalise import ProbabilityGraph
    from retinacli.models.registry import MODEL_TASKS, create_model

    torch.manual_seed(0)
    m = create_model("av_seqnet", channels=(4, 8), av_channels=(4, 8)).eval()
    img = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        p = ProbabilityGraph(m)(img)
    assert p.shape == (2, 3, 32, 32)
    assert torch.allclose(p[:, 1] + p[:, 2], p[:, 0], atol=1e-6)
    assert float(p.min()) >= 0 and float(p.max()) <= 1
    assert MODEL_TASKS["av_seqnet"] == "av"


def test_av_stream_loads_a_vessel_checkpoint(tiny_checkpoint):
    from retinacli.models.registry import create_model
    from retinacli.train.checkpoint import load_checkpoint

    m = create_model("av_seqnet", channels=(4, 8), av_channels=(4, 8))
    missing, unexpected = m.load_state_dict(load_checkpoint(tiny_checkpoint)["state_dict"], strict=False)
    assert not unexpected and missing and all(k.startswith("cls_") for k in missing)


def test_av_loss_ignores_unlabelled_pixels():
    logits = torch.zeros(1, 1, 4, 4)
    logits[0, 0, 0, 0] = 10.0   # confident artery on an artery pixel
    logits[0, 0, 3, 3] = 10.0   # confident artery on an unlabelled pixel: ignored
    art = torch.zeros(1, 1, 4, 4)
    art[0, 0, 0, 0] = 1
    vein = torch.zeros(1, 1, 4, 4)
    fov = torch.ones(1, 1, 4, 4)
    assert float(av_bce_loss(logits, art, vein, fov)) < 1e-4
    vein[0, 0, 3, 3] = 1        # now labelled vein: a large loss
    assert float(av_bce_loss(logits, art, vein, fov)) > 4
    assert float(av_bce_loss(logits, art * 0, vein * 0, fov)) == 0.0


def test_rite_colours_and_hrf_values(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 0, 255)
    rgb[0, 2] = (0, 255, 0)
    rgb[1, 0] = (255, 255, 255)
    write_rgb(tmp_path / "r.png", rgb)
    s = Sample("rite/x", tmp_path / "img.tif", tmp_path / "r.png", None, "rite_av")
    assert load_av_label(s).tolist() == [[1, 2, 3], [3, 0, 0]]
    assert load_label(s).tolist() == [[True, True, True], [True, False, False]]
    cv2.imwrite(str(tmp_path / "h.png"), np.array([[0, 1, 2, 3]], np.uint8))
    h = Sample("hrf/x", tmp_path / "img.png", tmp_path / "h.png", None, "hrf_av")
    assert load_av_label(h).tolist() == [[0, 1, 2, 3]]
    with pytest.raises(ValueError):
        load_av_label(Sample("drive/x", tmp_path / "i", tmp_path / "h.png", None))


@requires_data
def test_rite_reader_pairs_drive_images():
    rite = DATASETS / "RITE"
    if not rite.exists():
        pytest.skip("RITE not present")
    test = read_spec(f"rite:{rite}:test")
    assert len(test) == 20 and test[0].image.name == "01_test.tif" and test[0].fov is not None
    lab = load_av_label(test[0])
    assert lab.shape == (584, 565) and set(np.unique(lab)) == {0, 1, 2, 3}


def test_av_counts_and_painting():
    label = np.zeros((5, 5), np.uint8)
    label[0, :] = 1
    label[4, :] = 2
    pred = label.copy()
    pred[0, 0] = 2
    pred[4, 0:2] = 1
    c = AvCounts()
    c.add(pred, label, label > 0)
    assert (c.tp, c.fn, c.tn, c.fp) == (4, 1, 3, 2)
    m = c.metrics()
    assert m["ACC"] == pytest.approx(0.7) and m["SE"] == pytest.approx(0.8) and m["SP"] == pytest.approx(0.6)


def test_post_processing_fixes_a_minority_of_wrong_pixels():
    # one horizontal vessel, 40 px long; the model calls 30% of it vein (one stretch): the segment vote repaints it
    h, w = 9, 40
    p_ves = np.zeros((h, w), np.float32)
    p_ves[3:6, :] = 0.9
    p_a = np.where(p_ves > 0, 0.8, 0).astype(np.float32)
    p_v = np.where(p_ves > 0, 0.1, 0).astype(np.float32)
    p_a[3:6, 28:] = 0.2
    p_v[3:6, 28:] = 0.7
    fov = np.ones((h, w), bool)
    target = p_ves > 0
    before, after = av_labels_before_after(p_ves, p_a, p_v, fov, 0.5, target, AvGraphConfig())
    assert (before[target] == 2).sum() == 36
    assert (after[target] == 1).all()


def _hrf_av_layout(root: Path, split: str, n: int) -> Path:
    for i in range(n):
        rgb, ves = draw_fundus(120, 128, seed=30 + i, return_mask=True)
        lab = np.zeros(ves.shape, np.uint8)
        lab[ves] = 2
        lab[ves & (np.arange(128)[None, :] < 64)] = 1
        write_rgb(root / split / "images" / f"x{i}.png", rgb)
        (root / split / "1st_manual").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / split / "1st_manual" / f"x{i}_AVmanual.png"), lab)
    return root


def test_train_av_then_evaluate(tiny_checkpoint, tmp_path):
    data = _hrf_av_layout(tmp_path / "hrfav", "training", 3)
    run = tmp_path / "run"
    res = invoke("train", "av", "-d", f"hrf:{data}:training", "--run-dir", run, "--vessel-init", tiny_checkpoint,
                 "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--patch-px", "32",
                 "--av-channels", "4,8", "--val-every", "3", "--threads", "1")
    assert res.exit_code == 0, res.output
    ck = torch.load(run / "model.pt", map_location="cpu", weights_only=False)
    assert ck["task"] == "av" and ck["model"]["kwargs"]["av_channels"] == [4, 8]
    header = (run / "metrics.csv").read_text().splitlines()
    assert "val_av_accuracy" in header[0] and header[1].split(",")[header[0].split(",").index("val_av_accuracy")]
    out_csv = tmp_path / "ev" / "av.csv"
    res = invoke("evaluate", "av", "-d", f"hrf:{data}:training", "-m", f"m={run / 'model.pt'}", "--out-csv", out_csv)
    assert res.exit_code == 0, res.output
    assert "vessel" in res.output and "centreline" in res.output and "->" in res.output
    overall = pd.read_csv(out_csv.with_name("av_overall.csv"))
    for col in ("vessel_ACC_before", "vessel_ACC_after", "centreline_SE_after", "vessel_SP_before"):
        assert 0 <= overall.loc[0, col] <= 1
    assert len(pd.read_csv(out_csv)) == 3


def test_train_av_refuses_vessel_only_data(tiny_checkpoint, tmp_path):
    from conftest import make_folder_dataset

    data = make_folder_dataset(tmp_path / "v", n=2)
    res = invoke("train", "av", "-d", f"folder:{data}", "--run-dir", tmp_path / "run", "--vessel-init", tiny_checkpoint,
                 "--epochs", "1", "--steps-per-epoch", "1", "--val-every", "0")
    assert res.exit_code == 2 and "artery/vein labels" in res.output


def test_process_writes_av_map_segments_and_biomarker_columns(tiny_model_dir, tiny_av_dir, tmp_path):
    import csv

    scans = tmp_path / "scans"
    write_rgb(scans / "a.png", draw_fundus(150, 160, seed=5))
    out = tmp_path / "out"
    res = invoke("process", scans, "--out", out, "--model", tiny_model_dir, "--av-model", tiny_av_dir, "-q",
                 "--no-hemorrhage")
    assert res.exit_code == 0, res.output
    row = next(csv.DictReader((out / "report.csv").open()))
    assert row["status"] == "ok", row["reason"]
    for name in ("av.png", "av_overlay.jpg", "segments.csv"):
        assert (out / "a.png" / name).exists() and name in row["outputs"]
    from retinacli.pipeline.av_stage import AV_FIELDS, SEGMENT_FIELDS

    assert set(AV_FIELDS) <= set(row)
    assert row["av_segments"] != "" and row["cre_method"] in ("knudtson_2003", "")
    header = (out / "a.png" / "segments.csv").read_text().splitlines()[0].split(",")
    assert header == SEGMENT_FIELDS
    av = cv2.imread(str(out / "a.png" / "av.png"))
    assert av.shape == (150, 160, 3)
    # only black, red and blue in the A/V map (BGR on disk)
    colours = {tuple(c) for c in av.reshape(-1, 3)}
    assert colours <= {(0, 0, 0), (0, 0, 255), (255, 0, 0)}


def test_train_av_continues_from_an_av_checkpoint(tiny_checkpoint, tmp_path):
    data = _hrf_av_layout(tmp_path / "hrfav", "training", 3)
    common = ("-d", f"hrf:{data}:training", "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2",
              "--patch-px", "32", "--val-every", "0", "--threads", "1")
    first = tmp_path / "first"
    res = invoke("train", "av", "--run-dir", first, "--vessel-init", tiny_checkpoint, "--av-channels", "4,8", *common)
    assert res.exit_code == 0, res.output
    # --init takes the classification-stream channels from the A/V checkpoint, whatever --av-channels says
    second = tmp_path / "second"
    res = invoke("train", "av", "--run-dir", second, "--init", first / "model.pt", "--av-channels", "8,16", "--lr",
                 "0", *common)
    assert res.exit_code == 0, res.output
    a = torch.load(first / "model.pt", map_location="cpu", weights_only=False)
    b = torch.load(second / "model.pt", map_location="cpu", weights_only=False)
    assert b["model"]["kwargs"]["av_channels"] == [4, 8]
    # lr 0: the classification stream is exactly the one it started from (batch-norm running stats aside)
    for k, v in a["state_dict"].items():
        if k.startswith("cls_") and "running" not in k and "num_batches" not in k:
            assert torch.equal(v, b["state_dict"][k]), k
    # a vessel checkpoint is refused by --init, with a pointer to --vessel-init
    res = invoke("train", "av", "--run-dir", tmp_path / "third", "--init", tiny_checkpoint, *common)
    assert res.exit_code == 2 and "--vessel-init" in res.output


def test_evaluate_av_follows_the_artefact_flips_unless_single_pass(tiny_av_dir, tmp_path):
    import json
    import shutil

    data = _hrf_av_layout(tmp_path / "hrfav", "test", 2)
    model = tmp_path / "av_flip"
    shutil.copytree(tiny_av_dir, model)
    meta = json.loads((model / "metadata.json").read_text())
    meta["test_time_flips"] = ["horizontal"]
    (model / "metadata.json").write_text(json.dumps(meta))
    for extra, expected in (((), "horizontal"), (("--single-pass",), "none")):
        out_csv = tmp_path / f"ev{len(extra)}" / "av.csv"
        res = invoke("evaluate", "av", "-d", f"hrf:{data}:test", "-m", f"m={model}", "--out-csv", out_csv, *extra)
        assert res.exit_code == 0, res.output
        assert pd.read_csv(out_csv.with_name("av_overall.csv")).loc[0, "test_time_flips"] == expected


def _geometry(dd_px: float, measured_px: float):
    from retinacli.postprocess.disc_fovea import DiscFovea

    return DiscFovea(200.5, 200.5, dd_px, True, measured_px, 330.5, 210.5, True, "disc_fovea", "brightness+vessels", "dark_green_annulus", "",
                     1.3, 0.9)


@pytest.mark.parametrize("measured", [60.0, float("nan")])
def test_micrometre_scale_comes_from_the_measured_disc_only(measured):
    """The working DD leans on the 45-degree FOV prior, so only the measured fit may set a micrometre scale."""
    from retinacli.pipeline.av_stage import av_outputs
    from retinacli.preprocess.normalise import ScaleSpec, prepare

    h = w = 400
    rgb = np.zeros((h, w, 3), np.uint8)
    cv2.circle(rgb, (200, 200), 190, (160, 80, 40), -1)
    vessels = np.zeros((h, w), np.uint8)
    for ang in range(0, 360, 30):
        t = np.deg2rad(ang)
        cv2.line(vessels, (200, 200), (int(200 + 180 * np.cos(t)), int(200 + 180 * np.sin(t))), 1, 5)
    mask = vessels.astype(bool)
    prep = prepare(rgb, ScaleSpec(432, 400))
    p_art = np.where(mask, 0.8, 0.0).astype(np.float32)
    out = av_outputs("x", prep, mask, mask.astype(np.float32), p_art, (mask * 0.2).astype(np.float32),
                     _geometry(55.0, measured), {"quality": "gradable"}, 0.5)
    if np.isfinite(measured):
        assert out.columns["scale_source"] == "disc_diameter"
        assert out.columns["um_per_px"] == pytest.approx(1800.0 / measured, rel=1e-4)
    else:
        assert out.columns["scale_source"] == "none" and out.columns["um_per_px"] == ""
