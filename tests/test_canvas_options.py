"""Smaller canvas sides (ScaleSpec.canvas_options_px): which side an image gets, the export of their graphs, how
an artefact reads them, backends that run several sides, and `retina process` batching by side."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import build_tiny_checkpoint, draw_fundus, write_rgb

from retinacli.preprocess.fov import FovCircle
from retinacli.preprocess.normalise import ScaleSpec, make_transform, prepare, scale_spec_of

LADDER = ScaleSpec(canvas_px=1056, fov_diameter_px=1024, min_fov_diameter_px=896, canvas_options_px=(928, 992))


# --- which side an image gets (pure) ---------------------------------------------------------------------------

@pytest.mark.parametrize("model_fov,side", [(896.0, 928), (896.5, 992), (960.0, 992), (960.01, 1056),
                                            (1024.0, 1056)])
def test_the_smallest_side_that_keeps_the_margin(model_fov, side):
    assert LADDER.margin_px == 32
    assert LADDER.canvas_side(model_fov) == side
    assert ScaleSpec(1056, 1024, 896).canvas_side(model_fov) == 1056  # no options: always the model's canvas


def test_canvas_sides_and_the_single_side_specs():
    assert LADDER.canvas_sides == (928, 992, 1056)
    assert LADDER.at_side(1056) == ScaleSpec(1056, 1024, 896)
    assert LADDER.at_side(928) == ScaleSpec(928, 896, 896)
    assert LADDER.at_side(992) == ScaleSpec(992, 960, 896)
    assert ScaleSpec(1056, 1024, 960, (928,)).at_side(928) == ScaleSpec(928, 896, 896)  # minimum clipped to fit
    with pytest.raises(ValueError, match="not one of"):
        LADDER.at_side(960)


@pytest.mark.parametrize("options", [(1056,), (1100,), (32,), (20,), (992, 928), (928, 928)])
def test_unusable_canvas_options_are_refused(options):
    with pytest.raises(ValueError):
        ScaleSpec(1056, 1024, 896, options)


def test_options_round_trip_through_metadata():
    assert scale_spec_of({"canvas_px": 1056, "fov_diameter_px": 1024, "min_fov_diameter_px": 896},
                         [992, 928]) == LADDER


def test_transform_and_prepare_use_the_chosen_side():
    drive_like = FovCircle(cx=282.0, cy=292.0, r=270.0, fitted=True)  # 540 px FOV, drawn at the 896 px minimum
    t = make_transform(drive_like, 584, 565, LADDER)
    assert t.canvas_px == 928 and t.scale == pytest.approx(896 / 540)
    # the FOV centre lands on the canvas centre (pixel-centre convention: index = side / 2 - 0.5)
    x = (drive_like.cx - 0.5) * t.scale + t.tx
    assert x == pytest.approx(928 / 2 - 0.5)
    yy, xx = np.mgrid[:200, :200]
    rgb = np.zeros((200, 200, 3), np.uint8)
    rgb[(yy - 99.5) ** 2 + (xx - 99.5) ** 2 < 80 ** 2] = (180, 90, 40)  # FOV 160 px
    small = ScaleSpec(256, 240, 120, (192,))
    prep = prepare(rgb, small)
    assert prep.canvas.shape == (192, 192, 3) and prep.transform.canvas_px == 192
    cols = np.nonzero(prep.canvas_fov.any(axis=0))[0]
    assert abs((cols.max() - cols.min() + 1) - 160) <= 2
    assert prepare(rgb, ScaleSpec(256, 240, 120)).canvas.shape == (256, 256, 3)


# --- export, artefact, backends (tiny model: canvas 96, FOV 88, drawn from 24 px up; extra side 80) ------------

SIDE = 80


@pytest.fixture(scope="module")
def ladder_checkpoint(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt_ladder") / "ladder.pt", seed=3,
                                 min_fov_diameter_px=24)


@pytest.fixture(scope="module")
def ladder_dir(ladder_checkpoint, tmp_path_factory) -> Path:
    from retinacli.export.artefact_writer import export_model_folder

    img = write_rgb(tmp_path_factory.mktemp("parity") / "small.png", draw_fundus(64, 68, seed=5))
    out = tmp_path_factory.mktemp("engines_ladder") / "ladder"
    export_model_folder(ladder_checkpoint, out, [img], extra_canvas_px=(SIDE,))
    return out


def _canvases(n: int, side: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    disc = (yy - side / 2) ** 2 + (xx - side / 2) ** 2 < ((side - 8) / 2) ** 2
    return (rng.integers(1, 256, (n, 3, side, side), dtype=np.uint8) * disc).astype(np.uint8)


def test_export_writes_and_describes_the_graphs_of_each_side(ladder_dir):
    from retinacli.runtime.artefact import sha256_file

    meta = json.loads((ladder_dir / "metadata.json").read_text())
    entry = meta["canvases"][str(SIDE)]
    assert entry["file"] == "model.c80.onnx" and entry["avx512_file"] == "model.c80.avx512.onnx"
    assert entry["fov_diameter_px_max"] == SIDE - 8
    for key in ("parity", "avx512_parity"):
        assert entry[key]["passed"] and entry[key]["images"] == 3  # the parity image + two noise canvases
    assert entry["avx512_parity"]["batch_size"] == 3
    for name in ("model.onnx", "model.avx512.onnx", "model.c80.onnx", "model.c80.avx512.onnx", "model.pt"):
        assert meta["sha256"][name] == sha256_file(ladder_dir / name)
    assert not list(ladder_dir.glob("*.staged.onnx"))
    import onnxruntime as ort

    shape = ort.InferenceSession(str(ladder_dir / "model.c80.onnx")).get_inputs()[0].shape
    assert shape[1:] == [3, SIDE, SIDE]


def test_model_info_offers_the_sides_and_the_backends_run_each(ladder_dir):
    from retinacli.runtime.artefact import create_backend, read_model_info
    from retinacli.runtime.onnxruntime_backend import OnnxRuntimeBackend

    info = read_model_info(ladder_dir)
    assert [c.side for c in info.extra_canvases] == [SIDE]
    spec = info.scale_spec()
    assert spec.canvas_options_px == (SIDE,) and spec.canvas_sides == (SIDE, 96)
    ort_be, torch_be = create_backend(info, "onnxruntime", threads=1), create_backend(info, "torch", threads=1)
    assert ort_be.canvas_sides == torch_be.canvas_sides == (SIDE, 96)
    for side in (SIDE, 96):
        batch = _canvases(3, side, seed=side)
        a, b = ort_be.run(batch), torch_be.run(batch)
        assert a.shape == (3, 1, side, side)
        assert float(np.abs(a - b).max()) < 1e-4
        # the side's own graph ran: the same answer as that file on its own
        own = OnnxRuntimeBackend(ladder_dir / ("model.onnx" if side == 96 else "model.c80.onnx"), threads=1)
        assert float(np.abs(a - own.run(batch)).max()) < 1e-5
    with pytest.raises(ValueError, match="S = 80 or 96"):
        ort_be.run(_canvases(1, 64))


def test_an_explicit_graph_of_a_smaller_side_runs_that_side(ladder_dir):
    from retinacli.runtime.artefact import create_backend, read_model_info

    info = read_model_info(ladder_dir / "model.c80.onnx")
    assert info.canvas_px == SIDE and info.extra_canvases == () and info.avx512_path is None
    assert info.scale_spec() == ScaleSpec(SIDE, SIDE - 8, 24)
    assert create_backend(info, "onnxruntime", threads=1).canvas_sides == (SIDE,)


def test_a_missing_side_falls_back_and_an_edited_one_is_refused(ladder_dir, tmp_path):
    from retinacli.runtime.artefact import read_model_info

    folder = tmp_path / "copy"
    shutil.copytree(ladder_dir, folder)
    (folder / "model.c80.onnx").unlink()
    (folder / "model.c80.avx512.onnx").unlink()
    info = read_model_info(folder)  # a copy without the optional graphs runs every image on the model's canvas
    assert info.extra_canvases == () and info.scale_spec().canvas_sides == (96,)
    (folder / "model.c80.onnx").write_bytes((ladder_dir / "model.onnx").read_bytes())
    with pytest.raises(ValueError, match="sha256 differs"):
        read_model_info(folder)


def test_re_export_without_sides_removes_their_old_graphs(ladder_checkpoint, ladder_dir, tmp_path):
    from retinacli.export.artefact_writer import export_model_folder
    from retinacli.runtime.artefact import read_model_info

    folder = tmp_path / "again"
    shutil.copytree(ladder_dir, folder)
    meta = export_model_folder(ladder_checkpoint, folder, [])
    assert "canvases" not in meta
    assert not list(folder.glob("model.c*.onnx"))
    assert read_model_info(folder).extra_canvases == ()


@pytest.mark.parametrize("side,match", [(100, "smaller than canvas_px"), (67, "does not fit")])
def test_an_unusable_side_fails_the_export_and_replaces_nothing(ladder_checkpoint, ladder_dir, tmp_path, side, match):
    from retinacli.export.artefact_writer import export_model_folder

    folder = tmp_path / "keep"
    shutil.copytree(ladder_dir, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ValueError, match=match):
        export_model_folder(ladder_checkpoint, folder, [], extra_canvas_px=(side,))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_cli_export_with_an_extra_side(ladder_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from retinacli.cli.app import app

    res = CliRunner().invoke(app, ["export-onnx", str(ladder_checkpoint), "--out", str(tmp_path / "m"),
                                   "--extra-canvas-px", str(SIDE), "--no-avx512-graph"])
    assert res.exit_code == 0, res.output
    assert "model.c80.onnx: max |diff|" in res.output
    assert sorted(p.name for p in (tmp_path / "m").glob("*.onnx")) == ["model.c80.onnx", "model.onnx"]
    bad = CliRunner().invoke(app, ["export-onnx", str(ladder_checkpoint), "--out", str(tmp_path / "n"),
                                   "--extra-canvas-px", "200"])
    assert bad.exit_code == 2 and "canvas option 200" in bad.output


# --- `retina process`: images batch by side ----------------------------------------------------------------------

def test_process_batches_images_by_side_and_maps_every_output_back(ladder_dir, tmp_path, monkeypatch):
    import cv2

    from retinacli.pipeline.config import ProcessConfig
    from retinacli.pipeline.run import EXIT_OK, process_inputs
    from retinacli.runtime import onnxruntime_backend

    sizes = {f"small{i}.png": (64, 68) for i in range(3)} | {f"large{i}.png": (120, 128) for i in range(3)}
    order = ["small0.png", "large0.png", "small1.png", "large1.png", "large2.png", "small2.png"]
    src = tmp_path / "in"
    for i, name in enumerate(order):
        write_rgb(src / name, draw_fundus(*sizes[name], seed=10 + i))
    seen = []
    real_run = onnxruntime_backend.OnnxRuntimeBackend.run

    def spy(self, batch):
        seen.append((len(batch), int(batch.shape[2])))
        return real_run(self, batch)

    monkeypatch.setattr(onnxruntime_backend.OnnxRuntimeBackend, "run", spy)
    out = tmp_path / "out"
    res = process_inputs(ProcessConfig(inputs=[src], out_dir=out, model=ladder_dir, batch_size=2, progress=False,
                                       threads=1, workers=2))
    assert res.exit_code == EXIT_OK and res.counts["ok"] == 6
    assert sorted(seen) == [(1, 80), (1, 96), (2, 80), (2, 96)]  # one side per batch, never mixed
    for name, (h, w) in sizes.items():
        mask = cv2.imread(str(out / name / "vessels.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (h, w)
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["models"]["vessels"]["canvas_options_px"] == [SIDE]
    assert "model.c80.onnx" in summary["models"]["vessels"]["files_run"]
