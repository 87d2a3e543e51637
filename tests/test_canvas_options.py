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
    with pytest.raises(ValueError, match="not one of"):
        LADDER.at_side(960)


@pytest.mark.parametrize("options", [(1056,), (1100,), (32,), (20,), (992, 928), (928, 928)])
def test_unusable_canvas_options_are_refused(options):
    with pytest.raises(ValueError):
        ScaleSpec(1056, 1024, 896, options)


def test_a_side_no_image_would_ever_get_is_refused():
    with pytest.raises(ValueError, match="never be used"):
        ScaleSpec(1056, 1024, 960, (928,))  # room for an 896 px FOV, but no FOV is drawn below 960 px
    with pytest.raises(ValueError, match="never be used"):
        ScaleSpec(1056, 1024, None, (928,))  # a fixed scale: every FOV is drawn at 1024 px
    assert ScaleSpec(1056, 1024, 896, (928,)).canvas_options_px == (928,)  # room for exactly the smallest FOV


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


@pytest.mark.parametrize("name", ["model.c80.onnx", "model.c80.avx512.onnx"])
def test_a_smaller_side_graph_named_on_its_own_is_refused(ladder_dir, name):
    from retinacli.runtime.artefact import read_model_info

    with pytest.raises(ValueError, match="80-px graph, only for images"):
        read_model_info(ladder_dir / name)


def test_a_graph_of_the_wrong_side_is_refused_before_any_work(ladder_dir, tmp_path):
    from retinacli.runtime.artefact import create_backend, read_model_info
    from retinacli.runtime.base import BackendUnavailable

    folder = tmp_path / "renamed"
    shutil.copytree(ladder_dir, folder)
    (folder / "model.onnx").write_bytes((ladder_dir / "model.c80.onnx").read_bytes())  # an 80 px graph as the main
    meta = json.loads((folder / "metadata.json").read_text())
    del meta["sha256"]["model.onnx"]
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BackendUnavailable, match="80 x 80 canvases, not 96 x 96"):
        create_backend(read_model_info(folder / "model.onnx"), "onnxruntime", threads=1)


@pytest.mark.parametrize("canvases", [[1, 2], {"eighty": {}}, {"80": "model.c80.onnx"}])
def test_malformed_canvases_metadata_names_the_file(ladder_dir, tmp_path, canvases):
    from retinacli.runtime.artefact import read_model_info

    folder = tmp_path / "bad"
    shutil.copytree(ladder_dir, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["canvases"] = canvases
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="metadata.json: malformed 'canvases'"):
        read_model_info(folder)


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


def test_re_export_without_sides_removes_their_old_graphs_and_nothing_else(ladder_checkpoint, ladder_dir, tmp_path):
    from retinacli.export.artefact_writer import export_model_folder
    from retinacli.runtime.artefact import read_model_info

    folder = tmp_path / "again"
    shutil.copytree(ladder_dir, folder)
    mine = ["model.c80.fp16.onnx", "model.c2-backup.onnx", "model.c80.onnx.bak", "notes.txt"]
    for name in mine:  # a user's own files beside the graphs
        (folder / name).write_text("keep me")
    meta = export_model_folder(ladder_checkpoint, folder, [])
    assert "canvases" not in meta
    assert not (folder / "model.c80.onnx").exists() and not (folder / "model.c80.avx512.onnx").exists()
    assert all((folder / name).read_text() == "keep me" for name in mine)
    assert read_model_info(folder).extra_canvases == ()


def test_a_later_parity_failure_replaces_nothing(ladder_checkpoint, ladder_dir, tmp_path, monkeypatch):
    from retinacli.export import artefact_writer
    from retinacli.export.onnx_export import ParityError

    folder = tmp_path / "keep"
    shutil.copytree(ladder_dir, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real, calls = artefact_writer.parity_check, []

    def fail_on_the_small_side(checkpoint, onnx_path, canvases, *a, **kw):
        calls.append(Path(onnx_path).name)
        if canvases.shape[2] == SIDE:
            raise ParityError("injected")
        return real(checkpoint, onnx_path, canvases, *a, **kw)

    monkeypatch.setattr(artefact_writer, "parity_check", fail_on_the_small_side)
    with pytest.raises(ParityError):
        artefact_writer.export_model_folder(ladder_checkpoint, folder, [], extra_canvas_px=(SIDE,))
    assert calls[:2] == ["model.staged.onnx", "model.avx512.staged.onnx"]  # the main side had passed
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_export_records_how_far_the_smaller_side_is_from_the_main_canvas(ladder_dir):
    agree = json.loads((ladder_dir / "metadata.json").read_text())["canvases"][str(SIDE)]["vs_main_canvas"]
    assert agree["images"] == 1
    assert 0.0 <= agree["mean_abs_diff_in_fov"] <= agree["max_abs_diff_in_fov"] < 1.0
    assert 0.0 <= agree["share_over_1e-3"] <= 1.0


def test_the_sides_agree_exactly_away_from_the_canvas_border(ladder_checkpoint):
    """A canvas and the same canvas inside the model's larger one (integer shift, same pooling grid) give the same
    probabilities wherever the canvas border is out of the network's reach: the sides differ only near the rim."""
    from retinacli.runtime.torch_backend import TorchBackend

    be = TorchBackend(ladder_checkpoint, canvas_sides=(SIDE, 96))
    small = _canvases(1, SIDE, seed=4)
    big = np.zeros((1, 3, 96, 96), np.uint8)
    big[:, :, 8:8 + SIDE, 8:8 + SIDE] = small
    d = np.abs(be.run(small)[0, 0] - be.run(big)[0, 0, 8:8 + SIDE, 8:8 + SIDE])
    assert float(d[24:-24, 24:-24].max()) < 1e-5
    assert float(d.max()) > 1e-5  # the border itself does change things (the test can fail)


@pytest.mark.parametrize("side,match", [(100, "smaller than canvas_px"), (72, "does not fit"),
                                        (12, "never be used")])
def test_an_unusable_side_fails_the_export_and_replaces_nothing(ladder_checkpoint, ladder_dir, tmp_path, side, match):
    from retinacli.export.artefact_writer import export_model_folder

    folder = tmp_path / "keep"
    shutil.copytree(ladder_dir, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ValueError, match=match):
        export_model_folder(ladder_checkpoint, folder, [], extra_canvas_px=(side,))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_sides_must_keep_the_pooling_grid():
    from retinacli.export.artefact_writer import check_canvas_sides

    check_canvas_sides(ScaleSpec(1056, 1024, 896, (928,)), 8)    # shift 64: fine for 8 and 16
    check_canvas_sides(ScaleSpec(1056, 1024, 896, (928,)), 16)
    check_canvas_sides(ScaleSpec(1056, 1024, 896, (1040,)), 8)   # shift 8
    with pytest.raises(ValueError, match="pooling grid"):
        check_canvas_sides(ScaleSpec(1056, 1024, 896, (1040,)), 16)
    with pytest.raises(ValueError, match="multiples of 16"):
        check_canvas_sides(ScaleSpec(1056, 1024, 896, (1000,)), 8)  # the standardisation pools 16 x 16 blocks
    with pytest.raises(ValueError, match="multiples of 32"):
        check_canvas_sides(ScaleSpec(1040, 1008, 896), 32)


def test_downsampling_factor_of_the_registry_models():
    from retinacli.models.registry import create_model, downsampling_factor

    assert downsampling_factor(create_model("vessel_unet", channels=(8, 16, 32, 64))) == 8
    assert downsampling_factor(create_model("av_seqnet", channels=(8, 16), av_channels=(8, 16, 32))) == 4
    assert downsampling_factor(create_model("hemorrhage_unet", channels=(8, 16, 32, 64, 128))) == 16


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
    assert not (tmp_path / "n" / "model.onnx").exists()


def test_a_listed_side_as_big_as_the_canvas_is_refused_naming_the_metadata(ladder_dir, tmp_path):
    from retinacli.runtime.artefact import read_model_info

    folder = tmp_path / "big"
    shutil.copytree(ladder_dir, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["canvases"] = {"96": {"file": "model.avx512.onnx"}}
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="metadata.json: canvas option 96 px"):
        read_model_info(folder)


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


def _spy_runs(monkeypatch, fail_side: int | None = None) -> list[tuple[str, int, int]]:
    """Record (model folder name, batch size, side) of every ONNX Runtime call; raise on ``fail_side``."""
    from retinacli.runtime import onnxruntime_backend

    seen = []
    real_run = onnxruntime_backend.OnnxRuntimeBackend.run

    def spy(self, batch):
        seen.append((self.path.parent.name, len(batch), int(batch.shape[2])))
        if int(batch.shape[2]) == fail_side:
            raise RuntimeError("injected failure")
        return real_run(self, batch)

    monkeypatch.setattr(onnxruntime_backend.OnnxRuntimeBackend, "run", spy)
    return seen


def test_a_mixed_folder_keeps_at_most_about_a_batch_waiting(ladder_dir, tiny_av_dir, tmp_path, monkeypatch):
    from retinacli.pipeline.config import ProcessConfig
    from retinacli.pipeline.run import EXIT_OK, process_inputs

    order = [("0_s", (64, 68)), ("1_l", (120, 128)), ("2_s", (64, 68)), ("3_l", (120, 128)), ("4_l", (120, 128)),
             ("5_s", (64, 68))]  # in discovery order (sorted names); s: FOV small enough for the 80 px side
    src = tmp_path / "in"
    for i, (name, hw) in enumerate(order):
        write_rgb(src / f"{name}.png", draw_fundus(*hw, seed=20 + i))
    seen = _spy_runs(monkeypatch)
    res = process_inputs(ProcessConfig(inputs=[src], out_dir=tmp_path / "out", model=ladder_dir,
                                       av_model=tiny_av_dir, batch_size=3, progress=False, threads=1, workers=1))
    assert res.exit_code == EXIT_OK and res.counts["ok"] == 6
    vessel_runs = [(n, side) for folder, n, side in seen if folder == ladder_dir.name]
    av_runs = [(n, side) for folder, n, side in seen if folder == tiny_av_dir.name]
    # s l s l: four wait, more than a batch -> the oldest bucket (both s) runs as it is; the third l fills its
    # bucket; the last s is left for the end. The A/V model (one canvas side) runs the same batches.
    assert vessel_runs == [(2, SIDE), (3, 96), (1, SIDE)]
    assert av_runs == [(2, 96), (3, 96), (1, 96)]


def test_an_inference_failure_fails_only_its_bucket(ladder_dir, tmp_path, monkeypatch):
    from retinacli.pipeline.config import ProcessConfig
    from retinacli.pipeline.run import EXIT_SOME_FAILED, process_inputs

    src = tmp_path / "in"
    for i, (name, hw) in enumerate([("s0", (64, 68)), ("l0", (120, 128)), ("s1", (64, 68))]):
        write_rgb(src / f"{name}.png", draw_fundus(*hw, seed=30 + i))
    _spy_runs(monkeypatch, fail_side=SIDE)
    out = tmp_path / "out"
    res = process_inputs(ProcessConfig(inputs=[src], out_dir=out, model=ladder_dir, batch_size=2, progress=False,
                                       threads=1, workers=1))
    assert res.exit_code == EXIT_SOME_FAILED
    import csv

    rows = {r["image_id"]: r for r in csv.DictReader((out / "report.csv").open(newline=""))}
    assert rows["l0.png"]["status"] == "ok" and (out / "l0.png" / "vessels.png").exists()
    for name in ("s0.png", "s1.png"):
        assert rows[name]["status"] == "failed"
        assert rows[name]["reason"] == "inference_error: RuntimeError: injected failure"
        assert not (out / name / "vessels.png").exists()
