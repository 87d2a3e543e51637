"""Export: checkpoint -> model folder (model.onnx + model.pt + metadata.json) with a mandatory parity check."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import TINY_CANVAS_PX, TINY_FOV_DIAMETER_PX, build_tiny_checkpoint, draw_fundus, write_rgb

from retinacli.export import artefact_writer
from retinacli.export.artefact_writer import export_model_folder, parity_canvases
from retinacli.export.onnx_export import ParityError, parity_check
from retinacli.preprocess.normalise import ScaleSpec
from retinacli.runtime.artefact import METADATA_FORMAT, read_model_info, sha256_file
from retinacli.runtime.onnxruntime_backend import OnnxRuntimeBackend


def test_model_folder_has_its_files_and_documented_metadata(tiny_model_dir, tiny_checkpoint):
    assert sorted(p.name for p in tiny_model_dir.iterdir()) == ["metadata.json", "model.avx512.onnx", "model.onnx",
                                                                 "model.pt"]
    meta = json.loads((tiny_model_dir / "metadata.json").read_text())
    assert meta["format"] == METADATA_FORMAT == "retina-model/1"
    assert meta["input"]["dtype"] == "uint8"
    assert meta["input"]["height"] == meta["input"]["width"] == TINY_CANVAS_PX
    assert meta["input"]["batch"] == "dynamic"
    assert meta["output"]["dtype"] == "float32"
    assert meta["preprocess"]["canvas_px"] == TINY_CANVAS_PX
    assert meta["preprocess"]["fov_diameter_px"] == TINY_FOV_DIAMETER_PX
    assert meta["threshold"] == pytest.approx(0.5)
    assert meta["architecture"] == {"name": "vessel_unet", "kwargs": {"channels": [4, 8]}}
    assert meta["parameters"] > 0
    assert meta["training"]["data"] == ["synthetic"]
    # the recorded hashes are those of the files actually shipped
    assert meta["sha256"]["model.onnx"] == sha256_file(tiny_model_dir / "model.onnx")
    assert meta["sha256"]["model.pt"] == sha256_file(tiny_model_dir / "model.pt")
    assert meta["sha256"]["model.avx512.onnx"] == sha256_file(tiny_model_dir / "model.avx512.onnx")
    pairs = meta["graphs"]["avx512"]
    assert pairs["file"] == "model.avx512.onnx" and "AVX-512" in pairs["runs_on"]
    assert pairs["parity"]["passed"] is True and pairs["parity"]["max_abs_diff"] <= 1e-4
    assert pairs["parity"]["batch_size"] == 3  # odd batches: the graph's padding path is checked too
    assert isinstance(pairs["parity"]["cpu_avx512"], bool)  # on which kind of CPU the graphs were checked
    assert meta["parity"]["cpu_avx512"] == pairs["parity"]["cpu_avx512"]
    parity = meta["parity"]
    assert parity["passed"] is True
    assert parity["images"] == 2  # no parity images given: the two noise canvases
    assert 0.0 <= parity["max_abs_diff"] <= 1e-4
    assert parity["tolerance"] == pytest.approx(1e-4)
    # no staging / temporary files left behind
    assert not list(tiny_model_dir.glob("*.tmp")) and not (tiny_model_dir / "model.staged.onnx").exists()


def test_shipped_model_pt_is_slim_and_loads(tiny_model_dir):
    from retinacli.train.checkpoint import load_checkpoint, model_from_checkpoint

    ck = load_checkpoint(tiny_model_dir / "model.pt")
    for k in ("optimizer", "rng", "torch_rng", "epoch", "best_f1"):
        assert k not in ck
    assert model_from_checkpoint(ck) is not None


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_has_dynamic_batch(tiny_model_dir, batch):
    be = OnnxRuntimeBackend(tiny_model_dir / "model.onnx", threads=1)
    assert be.canvas_sides == (TINY_CANVAS_PX,)
    x = np.random.default_rng(batch).integers(0, 256, (batch, 3, TINY_CANVAS_PX, TINY_CANVAS_PX), dtype=np.uint8)
    out = be.run(x)
    assert out.shape == (batch, 1, TINY_CANVAS_PX, TINY_CANVAS_PX)
    assert out.dtype == np.float32
    assert np.all((out >= 0) & (out <= 1))
    be.close()


def test_parity_canvases_include_given_images_and_noise(tmp_path):
    img = write_rgb(tmp_path / "a.png", draw_fundus(110, 130, seed=4))
    canv = parity_canvases([img], ScaleSpec(TINY_CANVAS_PX, TINY_FOV_DIAMETER_PX))
    assert canv.shape == (3, 3, TINY_CANVAS_PX, TINY_CANVAS_PX) and canv.dtype == np.uint8
    # the noise canvases are black outside the FOV disc (corners)
    assert canv[1:, :, 0, 0].max() == 0 and canv[1:, :, -1, -1].max() == 0
    assert canv[0].max() > 0


def test_parity_passes_for_own_export(tiny_checkpoint, tiny_model_dir):
    canv = parity_canvases([], ScaleSpec(TINY_CANVAS_PX, TINY_FOV_DIAMETER_PX), seed=7)
    res = parity_check(tiny_checkpoint, tiny_model_dir / "model.onnx", canv)
    assert res["passed"] and res["images"] == 2 and res["max_abs_diff"] <= 1e-4


def test_parity_fails_against_another_checkpoints_onnx(tiny_checkpoint, tmp_path):
    other_ck = build_tiny_checkpoint(tmp_path / "other.pt", seed=123)
    other_dir = tmp_path / "other"
    export_model_folder(other_ck, other_dir, [])
    canv = parity_canvases([], ScaleSpec(TINY_CANVAS_PX, TINY_FOV_DIAMETER_PX))
    with pytest.raises(ParityError, match="max"):
        parity_check(tiny_checkpoint, other_dir / "model.onnx", canv)


def test_failed_parity_leaves_existing_model_untouched(tiny_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "engine"
    export_model_folder(tiny_checkpoint, out, [])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"model.onnx", "model.avx512.onnx", "model.pt", "metadata.json"}

    def failing_parity(*args, **kwargs):
        raise ParityError("forced failure for the test")

    monkeypatch.setattr(artefact_writer, "parity_check", failing_parity)
    other_ck = build_tiny_checkpoint(tmp_path / "other.pt", seed=5)
    with pytest.raises(ParityError):
        export_model_folder(other_ck, out, [])
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before  # byte-identical, and no staged/temporary files left behind
    assert read_model_info(out).sha256 == sha256_file(out / "model.onnx")


def test_failed_parity_of_the_avx512_graph_alone_still_leaves_the_folder_untouched(tiny_checkpoint, tmp_path,
                                                                                     monkeypatch):
    out = tmp_path / "engine"
    export_model_folder(tiny_checkpoint, out, [])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = artefact_writer.parity_check

    def fails_on_pairs(checkpoint, onnx_path, *args, **kwargs):
        if "avx512" in onnx_path.name:
            raise ParityError("forced failure of the pair graph")
        return real(checkpoint, onnx_path, *args, **kwargs)

    monkeypatch.setattr(artefact_writer, "parity_check", fails_on_pairs)
    with pytest.raises(ParityError, match="pair graph"):
        export_model_folder(build_tiny_checkpoint(tmp_path / "other.pt", seed=5), out, [])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_export_without_the_avx512_graph_removes_an_earlier_one(tiny_checkpoint, tmp_path):
    out = tmp_path / "engine"
    export_model_folder(tiny_checkpoint, out, [])
    assert (out / "model.avx512.onnx").exists()
    meta = export_model_folder(tiny_checkpoint, out, [], avx512_graph=False)
    assert "graphs" not in meta and "model.avx512.onnx" not in meta["sha256"]
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.onnx", "model.pt"]
    assert read_model_info(out).avx512_path is None
