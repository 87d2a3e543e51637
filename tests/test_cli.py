"""The `retina` command line end to end (Typer CliRunner; tiny models, a few training steps at most)."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import draw_fundus, make_folder_dataset, write_rgb

from retinacli.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_help_lists_the_commands():
    res = invoke("--help")
    assert res.exit_code == 0
    for cmd in ("process", "train", "evaluate", "export-onnx"):
        assert cmd in res.output
    res = invoke("train", "--help")
    assert res.exit_code == 0 and "vessels" in res.output and "refine" in res.output
    assert "vessels" in invoke("evaluate", "--help").output


def test_version():
    from retinacli import __version__

    res = invoke("--version")
    assert res.exit_code == 0 and __version__ in res.output


def test_help_does_not_import_torch_or_onnxruntime():
    code = (
        "import sys\n"
        "from retinacli.cli import app\n"
        "try:\n"
        "    app(['--help'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('torch', 'onnxruntime', 'onnx', 'pandas') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "export-onnx" in res.stdout  # the help really was printed
    heavy = res.stdout.strip().splitlines()[-1]
    assert heavy.startswith("HEAVY=")
    loaded = set(filter(None, heavy[len("HEAVY="):].split(",")))
    assert "torch" not in loaded and "onnxruntime" not in loaded, loaded


# ---------------------------------------------------------------- process

def _folder(root: Path, bad: bool) -> Path:
    write_rgb(root / "a.png", draw_fundus(120, 140, seed=0))
    write_rgb(root / "b.jpg", draw_fundus(100, 110, seed=1))
    if bad:
        (root / "c.png").write_text("not an image")
    return root


def test_process_exit_codes(tiny_model_dir, tiny_hemorrhage_dir, tiny_av_dir, tmp_path):
    good = _folder(tmp_path / "good", bad=False)
    res = invoke("process", good, "--out", tmp_path / "o1", "--model", tiny_model_dir, "--quiet", "--threads", "1",
                 "--hemorrhage-model", tiny_hemorrhage_dir, "--av-model", tiny_av_dir)
    assert res.exit_code == 0, res.output
    assert "report:" in res.output
    for name in ("vessels.png", "hemorrhages.png", "hemorrhage_findings.csv", "hemorrhages_overlay.jpg", "av.png",
                 "av_overlay.jpg", "segments.csv"):
        assert (tmp_path / "o1" / "a.png" / name).exists(), name

    mixed = _folder(tmp_path / "mixed", bad=True)
    res = invoke("process", mixed, "--out", tmp_path / "o2", "--model", tiny_model_dir, "-q", "--threads", "1",
                 "--no-hemorrhage", "--no-av")
    assert res.exit_code == 3, res.output
    with (tmp_path / "o2" / "report.csv").open(newline="") as f:
        rows = {r["image_id"]: r for r in csv.DictReader(f)}
    assert rows["c.png"]["status"] == "failed" and rows["a.png"]["status"] == "ok"

    res = invoke("process", tmp_path / "missing", "--out", tmp_path / "o3", "--model", tiny_model_dir, "-q",
                 "--no-hemorrhage", "--no-av")
    assert res.exit_code == 2
    assert not (tmp_path / "o3").exists()


def test_process_empty_folder_and_bad_model(tiny_model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    res = invoke("process", tmp_path / "empty", "--out", tmp_path / "o", "--model", tiny_model_dir, "-q",
                 "--no-hemorrhage", "--no-av")
    assert res.exit_code == 4
    good = _folder(tmp_path / "good", bad=False)
    res = invoke("process", good, "--out", tmp_path / "o2", "--model", tmp_path / "no-model", "-q")
    assert res.exit_code == 2
    res = invoke("process", good, "--out", tmp_path / "o3", "--model", tiny_model_dir, "-q", "--backend", "nope",
                 "--no-hemorrhage", "--no-av")
    assert res.exit_code == 2


# ---------------------------------------------------------------- export

def test_export_onnx(tiny_checkpoint, tmp_path):
    out = tmp_path / "engine"
    parity = tmp_path / "parity"
    write_rgb(parity / "p.png", draw_fundus(120, 120, seed=3))
    res = invoke("export-onnx", tiny_checkpoint, "--out", out, "--parity-images", parity)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.avx512.onnx", "model.onnx", "model.pt"]
    assert "parity on 3 images" in res.output  # the parity image + two noise canvases
    assert "model.avx512.onnx: max |diff|" in res.output
    res = invoke("export-onnx", tiny_checkpoint, "--out", out, "--no-avx512-graph")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.onnx", "model.pt"]

    res = invoke("export-onnx", tmp_path / "missing.pt", "--out", tmp_path / "e2")
    assert res.exit_code != 0
    assert not (tmp_path / "e2" / "model.onnx").exists()


# ---------------------------------------------------------------- evaluate

def test_evaluate_vessels_writes_csvs(tiny_model_dir, tmp_path):
    data = make_folder_dataset(tmp_path / "ds", n=2)
    out_csv = tmp_path / "x.csv"
    res = invoke("evaluate", "vessels", "-d", f"folder:{data}", "-m", f"tiny={tiny_model_dir}", "--out-csv", out_csv)
    assert res.exit_code == 0, res.output
    per_image = pd.read_csv(out_csv)
    overall = pd.read_csv(tmp_path / "x_overall.csv")
    assert len(per_image) == 2 and set(per_image["model"]) == {"tiny"}
    assert sorted(per_image["image"]) == ["ds/img00", "ds/img01"]
    assert len(overall) == 1 and int(overall["images"].iloc[0]) == 2
    for frame in (per_image, overall):
        for col in ("AUC", "ACC", "SE", "SP", "F1", "IoU"):
            assert col in frame.columns
        assert frame["AUC"].between(0, 1).all()
    assert "AUC" in res.output


def test_evaluate_bad_dataset_exits_2(tiny_model_dir, tmp_path):
    res = invoke("evaluate", "vessels", "-d", f"folder:{tmp_path / 'none'}", "-m", f"tiny={tiny_model_dir}")
    assert res.exit_code == 2


# ---------------------------------------------------------------- train

TRAIN_ARGS = ("--steps-per-epoch", "2", "--batch-size", "2", "--patch-px", "64", "--val-every", "0", "--threads", "1")


@pytest.fixture(scope="module")
def train_data(tmp_path_factory) -> Path:
    return make_folder_dataset(tmp_path_factory.mktemp("train") / "ds", n=2)


def _metric_rows(run_dir: Path) -> list[dict]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_train_vessels_resume_and_refine(train_data, tmp_path):
    import json

    import torch

    from retinacli.train.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "R"

    def args(epochs: int) -> tuple:
        return ("train", "vessels", "-d", f"folder:{train_data}", "--run-dir", run, "--epochs", str(epochs),
                *TRAIN_ARGS, "--channels", "4,8", "--canvas-px", "96", "--fov-diameter-px", "88")

    res = invoke(*args(1))
    assert res.exit_code == 0, res.output
    for name in ("model.pt", "last.pt", "metrics.csv", "config.json"):
        assert (run / name).exists(), name
    rows = _metric_rows(run)
    assert [r["epoch"] for r in rows] == ["1"] and rows[0]["step"] == "2"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["channels"] == [4, 8] and cfg["canvas_px"] == 96 and cfg["epochs"] == 1
    ck = load_checkpoint(run / "model.pt")
    assert ck["model"] == {"name": "vessel_unet", "kwargs": {"channels": [4, 8]}}
    assert ck["preprocess"]["canvas_px"] == 96 and ck["preprocess"]["fov_diameter_px"] == 88
    assert "optimizer" not in ck  # model.pt is the slim checkpoint
    w_epoch1 = {k: v.clone() for k, v in ck["state_dict"].items()}

    # the same run folder again without --resume is refused
    res = invoke(*args(1))
    assert res.exit_code == 2
    assert len(_metric_rows(run)) == 1

    # --resume with more epochs continues where it stopped
    res = invoke(*args(2), "--resume")
    assert res.exit_code == 0, res.output
    rows = _metric_rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[1]["step"] == "4"
    ck2 = load_checkpoint(run / "model.pt")
    assert ck2["provenance"]["epoch"] == 2
    assert any(not torch.equal(w_epoch1[k], ck2["state_dict"][k]) for k in w_epoch1)

    # stage 2 (ERA-Net refinement) from the stage-1 model; it keeps an image-following stage-1 scale
    ck1 = load_checkpoint(run / "model.pt")
    ck1["preprocess"]["min_fov_diameter_px"] = 60
    save_checkpoint(ck1, run / "model.pt")
    run2 = tmp_path / "R2"
    res = invoke("train", "refine", "--stage1", run / "model.pt", "-d", f"folder:{train_data}", "--run-dir", run2,
                 "--epochs", "1", *TRAIN_ARGS)
    assert res.exit_code == 0, res.output
    ck3 = load_checkpoint(run2 / "model.pt")
    assert ck3["model"]["name"] == "vessel_unet_refined"
    assert ck3["model"]["kwargs"]["channels"] == [4, 8]
    assert ck3["preprocess"]["canvas_px"] == 96
    assert ck3["preprocess"]["min_fov_diameter_px"] == 60 and ck3["preprocess"]["fov_diameter_px"] == 88
    assert ck3["provenance"]["stage1"]["checkpoint"] == str(run / "model.pt")
    assert any(k.startswith("attention.") for k in ck3["state_dict"])


def test_train_bad_dataset_exits_2(tmp_path):
    res = invoke("train", "vessels", "-d", f"folder:{tmp_path / 'none'}", "--run-dir", tmp_path / "R",
                 "--epochs", "1", *TRAIN_ARGS, "--channels", "4,8", "--canvas-px", "96", "--fov-diameter-px", "88")
    assert res.exit_code == 2


def test_refine_with_missing_stage1_exits_2(tmp_path):
    res = runner.invoke(app, ["train", "refine", "--stage1", str(tmp_path / "none.pt"), "-d", f"folder:{tmp_path}",
                              "--run-dir", str(tmp_path / "R2")])
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert not (tmp_path / "R2").exists()


def test_train_calibrate_sets_threshold_from_validation(tmp_path):
    from conftest import make_folder_dataset

    data = make_folder_dataset(tmp_path / "ds", n=4)
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "vessels", "-d", f"folder:{data}", "--run-dir", str(run), "--epochs", "1",
                                   "--steps-per-epoch", "2", "--batch-size", "2", "--patch-px", "64", "--channels",
                                   "4,8", "--canvas-px", "96", "--fov-diameter-px", "88", "--val-every", "2",
                                   "--threads", "1"])
    assert res.exit_code == 0, res.output
    import torch

    ck = torch.load(run / "model.pt", weights_only=False)
    assert "threshold_calibration" in ck and 0.0 <= ck["threshold"] <= 1.0
    res = CliRunner().invoke(app, ["train", "calibrate", "--run-dir", str(run)])
    assert res.exit_code == 0, res.output
    assert "threshold" in res.output
    # --checkpoint last: the final epoch becomes model.pt (without optimizer/RNG state), then is calibrated
    last = torch.load(run / "last.pt", weights_only=False)
    res = CliRunner().invoke(app, ["train", "calibrate", "--run-dir", str(run), "--checkpoint", "last"])
    assert res.exit_code == 0, res.output
    ck = torch.load(run / "model.pt", weights_only=False)
    assert all(torch.equal(ck["state_dict"][k], last["state_dict"][k]) for k in last["state_dict"])
    assert "optimizer" not in ck and "rng" not in ck and "threshold_calibration" in ck
    res = CliRunner().invoke(app, ["train", "calibrate", "--run-dir", str(run), "--checkpoint", "first"])
    assert res.exit_code == 2 and "checkpoint must be" in res.output


def test_package_list_covers_every_subpackage():
    """pyproject lists packages explicitly (engines/ travels as retinacli.engines): none may be forgotten."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"retinacli." + p.parent.relative_to(root / "retinacli").as_posix().replace("/", ".")
             for p in (root / "retinacli").rglob("__init__.py") if p.parent != root / "retinacli"}
    assert found | {"retinacli", "retinacli.engines"} == listed


def test_process_out_that_is_a_file_is_a_clear_error(tmp_path, tiny_model_dir):
    scans = tmp_path / "scans"
    write_rgb(scans / "a.png", draw_fundus(120, 128, seed=1))
    not_a_dir = tmp_path / "results"
    not_a_dir.write_text("keep me")
    res = CliRunner().invoke(app, ["process", str(scans), "--out", str(not_a_dir), "--model", str(tiny_model_dir), "-q",
                                   "--no-hemorrhage", "--no-av"])
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert not_a_dir.read_text() == "keep me"


def test_process_sigterm_writes_report_and_exits_130(tmp_path, tiny_model_dir):
    import signal
    import time

    scans = tmp_path / "scans"
    for i in range(60):
        write_rgb(scans / f"e{i:02d}.png", draw_fundus(300, 320, seed=i))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "retinacli.cli.main", "process", str(scans), "--out", str(out),
                             "--model", str(tiny_model_dir), "--batch-size", "1", "--workers", "1", "--threads", "1",
                             "-q", "--no-hemorrhage", "--no-av"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / ".retina" / "ledger.sqlite").exists() and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    if proc.poll() is not None:
        pytest.skip("finished before it could be stopped")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert len(rows) == 60
    assert {"pending"} <= {r["status"] for r in rows}
