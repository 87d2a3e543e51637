"""Test-time flips (runtime/flip_average.py): exact averaging on a fake backend, the artefact field, the
export option, evaluate --single-pass and the run summary."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from typer.testing import CliRunner

from conftest import draw_fundus, write_rgb
from retinacli.cli import app
from retinacli.runtime.artefact import create_backend, read_model_info
from retinacli.runtime.flip_average import FlipAveragedBackend, check_flips, flip_nchw


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


class RampBackend:
    """Fake backend whose output depends on position: probability = column index / W on every channel, plus
    a tenth of the red value (so flipping the input changes the answer in a known way)."""

    name = "fake"
    canvas_sides = (6,)
    max_batch = 0

    def __init__(self):
        self.calls = 0
        self.closed = False

    def run(self, batch):
        self.calls += 1
        n, _, h, w = batch.shape
        ramp = np.broadcast_to(np.arange(w, dtype=np.float32) / w, (n, 1, h, w))
        return ramp + batch[:, :1].astype(np.float32) / 10.0

    def close(self):
        self.closed = True


def test_flip_nchw_is_its_own_inverse_and_flips_the_right_axes():
    x = np.arange(2 * 3 * 4 * 6).reshape(2, 3, 4, 6)
    assert np.array_equal(flip_nchw(x, "horizontal"), x[..., ::-1])
    assert np.array_equal(flip_nchw(x, "vertical"), x[:, :, ::-1])
    assert np.array_equal(flip_nchw(x, "both"), x[:, :, ::-1, ::-1])
    for f in ("horizontal", "vertical", "both"):
        assert np.array_equal(flip_nchw(flip_nchw(x, f), f), x)


def test_flip_average_is_the_exact_mean_of_the_mapped_back_passes():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (2, 3, 4, 6), dtype=np.uint8)
    inner = RampBackend()
    be = FlipAveragedBackend(inner, ["horizontal"])
    out = be.run(batch)
    assert inner.calls == 2 and out.shape == (2, 1, 4, 6) and out.dtype == np.float32
    # the input-dependent part is flip-equivariant, so it survives unchanged; the ramp averages with its mirror
    ramp = np.arange(6, dtype=np.float32) / 6
    expected = (ramp + ramp[::-1]) / 2 + batch[:, :1].astype(np.float32) / 10.0
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), rtol=1e-6, atol=1e-6)
    # a vertical flip leaves a horizontal ramp alone: output = one pass
    np.testing.assert_allclose(FlipAveragedBackend(RampBackend(), ["vertical"]).run(batch), RampBackend().run(batch),
                               atol=1e-6)
    be.close()
    assert inner.closed and be.name == "fake" and be.canvas_sides == (6,)


def test_check_flips_rejects_unknown_names_and_drops_duplicates():
    assert check_flips(None) == () and check_flips([]) == ()
    assert check_flips(["horizontal", "horizontal", "both"]) == ("horizontal", "both")
    with pytest.raises(ValueError, match="diagonal"):
        check_flips(["diagonal"])
    with pytest.raises(ValueError, match="list of names"):
        check_flips("horizontal")               # a bare string is not split into letters


class ThreeChannelBackend:
    """Fake A/V-like backend: 3 output channels, each a different position-dependent map; max_batch 2."""

    name = "fake3"
    canvas_sides = (6,)
    max_batch = 2

    def __init__(self):
        self.batch_sizes = []

    def run(self, batch):
        self.batch_sizes.append(len(batch))
        n, _, h, w = batch.shape
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        maps = np.stack([xx / w, yy / h, xx * yy / (h * w)])
        return np.broadcast_to(maps, (n, 3, h, w)).astype(np.float32) + batch[:, :1].astype(np.float32) / 1000.0


def test_flip_average_on_three_channels_keeps_batch_size():
    batch = np.random.default_rng(1).integers(0, 256, (2, 3, 4, 6), dtype=np.uint8)
    inner = ThreeChannelBackend()
    be = FlipAveragedBackend(inner, ["both"])
    out = be.run(batch)
    assert out.shape == (2, 3, 4, 6) and be.max_batch == 2 and inner.batch_sizes == [2, 2]
    one = inner.run(batch)
    back = inner.run(flip_nchw(batch, "both"))[:, :, ::-1, ::-1]
    np.testing.assert_allclose(out, (one + back) / 2, rtol=1e-6, atol=1e-6)
    assert not np.allclose(out, one, atol=1e-3)  # the flipped pass really changed the answer


@pytest.fixture()
def flipped_he_dir(tiny_hemorrhage_dir, tmp_path):
    """The tiny haemorrhage model folder, copied, with test_time_flips = [horizontal] in its metadata."""
    import shutil

    out = tmp_path / "he_flip"
    shutil.copytree(tiny_hemorrhage_dir, out)
    meta = json.loads((out / "metadata.json").read_text())
    meta["test_time_flips"] = ["horizontal"]
    (out / "metadata.json").write_text(json.dumps(meta))
    return out


def test_artefact_flips_choose_the_backend(tiny_hemorrhage_dir, flipped_he_dir):
    plain = read_model_info(tiny_hemorrhage_dir)
    flipped = read_model_info(flipped_he_dir)
    assert plain.test_time_flips == () and flipped.test_time_flips == ("horizontal",)
    be = create_backend(flipped, "onnxruntime")
    assert isinstance(be, FlipAveragedBackend)
    single = create_backend(flipped, "onnxruntime", flips=())
    assert not isinstance(single, FlipAveragedBackend)
    side = plain.canvas_px
    canvas = np.ascontiguousarray(np.transpose(draw_fundus(side, side, seed=4), (2, 0, 1))[None])
    one = single.run(canvas)
    mirrored = single.run(flip_nchw(canvas, "horizontal"))[..., ::-1]
    np.testing.assert_allclose(be.run(canvas), (one + mirrored) / 2, atol=1e-6)
    be.close()
    single.close()


def test_unknown_flip_in_metadata_is_a_clear_error(flipped_he_dir):
    meta = json.loads((flipped_he_dir / "metadata.json").read_text())
    meta["test_time_flips"] = ["sideways"]
    (flipped_he_dir / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="metadata.json.*sideways"):
        read_model_info(flipped_he_dir)


def test_export_onnx_writes_the_flips(tiny_checkpoint, tmp_path):
    out = tmp_path / "engine"
    res = invoke("export-onnx", tiny_checkpoint, "--out", out, "--test-time-flips", "horizontal")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metadata.json").read_text())["test_time_flips"] == ["horizontal"]
    assert "test-time flips: horizontal" in res.output
    res = invoke("export-onnx", tiny_checkpoint, "--out", tmp_path / "bad", "--test-time-flips", "diagonal")
    assert res.exit_code == 2 and "diagonal" in res.output
    assert not (tmp_path / "bad" / "model.onnx").exists()


def test_evaluate_hemorrhage_single_pass_and_process_summary(tiny_model_dir, flipped_he_dir, tmp_path):
    import cv2

    root = tmp_path / "he"
    for i in range(2):
        rgb = draw_fundus(100, 110, seed=20 + i)
        write_rgb(root / "images" / f"h{i}.png", rgb)
        mask = np.zeros((100, 110), np.uint8)
        mask[40:50, 30 + 20 * i:40 + 20 * i] = 255
        (root / "masks").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "masks" / f"h{i}.png"), mask)
    for extra, expected in (((), "horizontal"), (("--single-pass",), "none")):
        out_csv = tmp_path / f"ev{len(extra)}" / "he.csv"
        res = invoke("evaluate", "hemorrhage", "-d", f"folder:{root}", "-m", f"h={flipped_he_dir}", "--out-csv",
                     out_csv, *extra)
        assert res.exit_code == 0, res.output
        assert pd.read_csv(out_csv.with_name("he_overall.csv")).loc[0, "test_time_flips"] == expected
    out = tmp_path / "out"
    res = invoke("process", root / "images", "--out", out, "--model", tiny_model_dir, "--hemorrhage-model",
                 flipped_he_dir, "--no-av", "-q")
    assert res.exit_code == 0, res.output
    models = json.loads((out / "run_summary.json").read_text())["models"]
    assert models["hemorrhage"]["test_time_flips"] == ["horizontal"] and models["vessels"]["test_time_flips"] == []
