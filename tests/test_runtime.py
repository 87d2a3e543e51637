"""Runtime: self-describing artefacts, backend choice, torch vs ONNX Runtime agreement, input checks."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from conftest import TINY_CANVAS_PX, TINY_FOV_DIAMETER_PX

from retinacli.runtime.artefact import create_backend, read_model_info, sha256_file
from retinacli.runtime.base import BackendUnavailable

S = TINY_CANVAS_PX


def _canvases(n: int, seed: int = 0) -> np.ndarray:
    """Random uint8 canvases, black outside a centred FOV disc (as the pipeline produces)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:S, :S]
    disc = (yy - S / 2) ** 2 + (xx - S / 2) ** 2 < (TINY_FOV_DIAMETER_PX / 2) ** 2
    return (rng.integers(1, 256, (n, 3, S, S), dtype=np.uint8) * disc).astype(np.uint8)


def test_read_model_info_folder_and_onnx_file(tiny_model_dir):
    a = read_model_info(tiny_model_dir)
    b = read_model_info(tiny_model_dir / "model.onnx")
    for info in (a, b):
        assert info.path == tiny_model_dir / "model.onnx"
        assert info.name == "vessels"
        assert (info.canvas_px, info.fov_diameter_px) == (TINY_CANVAS_PX, TINY_FOV_DIAMETER_PX)
        assert info.threshold == pytest.approx(0.5)
        assert info.sha256 == sha256_file(tiny_model_dir / "model.onnx")
        assert info.metadata["format"] == "retina-model/1"
    # the folder may switch to its image-pair graph on an AVX-512 CPU; an explicit model.onnx never does
    assert a.avx512_path == tiny_model_dir / "model.avx512.onnx" and b.avx512_path is None
    assert dataclasses.replace(a, avx512_path=None) == b


def test_read_model_info_checkpoint(tiny_checkpoint):
    info = read_model_info(tiny_checkpoint)
    assert info.path == tiny_checkpoint
    assert info.name == "vessel_unet"
    assert (info.canvas_px, info.fov_diameter_px) == (TINY_CANVAS_PX, TINY_FOV_DIAMETER_PX)
    assert info.threshold == pytest.approx(0.5)
    assert info.sha256 == sha256_file(tiny_checkpoint)
    assert "state_dict" not in info.metadata  # metadata is the description, not the weights


def test_auto_backend_follows_the_artefact(tiny_model_dir, tiny_checkpoint):
    be = create_backend(read_model_info(tiny_model_dir), "auto", threads=1)
    assert be.name == "onnxruntime" and be.canvas_sides == (S,)
    be.close()
    be = create_backend(read_model_info(tiny_checkpoint), "auto", threads=1)
    assert be.name == "torch" and be.canvas_sides == (S,)
    be.close()
    # a model folder can also be run with torch (it ships model.pt) ...
    be = create_backend(read_model_info(tiny_model_dir), "torch", threads=1)
    assert be.name == "torch"
    be.close()
    # ... but a bare checkpoint cannot be run by ONNX Runtime
    with pytest.raises(BackendUnavailable, match="export"):
        create_backend(read_model_info(tiny_checkpoint), "onnxruntime")


def test_torch_and_onnxruntime_agree(tiny_model_dir):
    info = read_model_info(tiny_model_dir)
    ort_be = create_backend(info, "onnxruntime", threads=1)
    torch_be = create_backend(info, "torch", threads=1)
    x = _canvases(3, seed=11)
    a, b = ort_be.run(x), torch_be.run(x)
    assert a.shape == b.shape == (3, 1, S, S)
    assert a.dtype == b.dtype == np.float32
    assert float(np.abs(a - b).max()) <= 1e-4
    # not trivially constant: different inputs give different outputs
    assert float(np.abs(a[0] - a[1]).max()) > 1e-4
    # batch-independence: one image alone == the same image inside a batch
    assert float(np.abs(ort_be.run(x[1:2]) - a[1:2]).max()) <= 1e-5


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_bad_batches_raise_value_error(tiny_model_dir, backend):
    be = create_backend(read_model_info(tiny_model_dir), backend, threads=1)
    good = _canvases(1)
    with pytest.raises(ValueError):
        be.run(good.astype(np.float32))                     # float, not uint8
    with pytest.raises(ValueError):
        be.run(good[:, :, : S // 2, : S // 2].copy())        # wrong H x W
    with pytest.raises(ValueError):
        be.run(good[0])                                     # missing batch axis
    with pytest.raises(ValueError):
        be.run(np.concatenate([good, good[:, :1]], axis=1))  # 4 channels
    assert be.run(good).shape == (1, 1, S, S)
    be.close()


def test_unknown_backend_name(tiny_model_dir):
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        create_backend(read_model_info(tiny_model_dir), "tensorflow")


def test_folder_without_metadata_is_not_a_model(tiny_model_dir, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "model.onnx", folder / "model.onnx")
    with pytest.raises(FileNotFoundError, match="metadata.json"):
        read_model_info(folder)
    with pytest.raises(FileNotFoundError):
        read_model_info(folder / "model.onnx")
    with pytest.raises(FileNotFoundError):
        read_model_info(tmp_path / "does-not-exist")


def test_metadata_with_unknown_format_is_rejected(tiny_model_dir, tmp_path):
    folder = tmp_path / "future"
    shutil.copytree(tiny_model_dir, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["format"] = "retina-model/99"
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format"):
        read_model_info(folder)


def test_torch_backend_on_a_model_folder_without_checkpoint(tiny_model_dir, tmp_path):
    folder = tmp_path / "onnx-only"
    folder.mkdir()
    for name in ("model.onnx", "metadata.json"):
        shutil.copy(tiny_model_dir / name, folder / name)
    with pytest.raises(BackendUnavailable, match="model.pt"):
        create_backend(read_model_info(folder), "torch")


@pytest.mark.parametrize("avx512", [True, False])
def test_onnx_runtime_runs_the_pair_graph_only_on_avx512_cpus(tiny_model_dir, monkeypatch, avx512):
    from retinacli.runtime import cpu_features
    from retinacli.runtime.artefact import runtime_files
    from retinacli.runtime.onnxruntime_backend import OnnxRuntimeBackend

    monkeypatch.setattr(cpu_features, "has_avx512", lambda: avx512)
    info = read_model_info(tiny_model_dir)
    assert info.avx512_path == tiny_model_dir / "model.avx512.onnx"
    be = create_backend(info, "onnxruntime", threads=1)
    names = [p.name for p in runtime_files(info, "onnxruntime")]
    assert names == (["model.avx512.onnx", "model.onnx"] if avx512 else ["model.onnx"])
    assert be.path.name == names[0]
    assert (be.odd_path.name if be.odd_path else None) == ("model.onnx" if avx512 else None)
    assert [p.name for p in runtime_files(info, "torch")] == ["model.pt"]
    plain = OnnxRuntimeBackend(info.path, threads=1)
    for n in (1, 2, 3):  # odd batches: the last image goes through model.onnx, the rest as pairs
        batch = _canvases(n, seed=n)
        out = be.run(batch)
        assert out.shape == (n, 1, S, S)
        assert float(np.abs(out - plain.run(batch)).max()) < 1e-5
    be.close()


def test_an_odd_batch_sends_only_its_last_image_to_the_plain_graph(tiny_model_dir):
    from retinacli.runtime.onnxruntime_backend import OnnxRuntimeBackend

    be = OnnxRuntimeBackend(tiny_model_dir / "model.avx512.onnx", threads=1, odd_path=tiny_model_dir / "model.onnx")
    sizes = {"pairs": [], "odd": []}

    class Spy:
        def __init__(self, inner, log):
            self.inner, self.log = inner, log

        def run(self, names, feed):
            self.log.append(len(next(iter(feed.values()))))
            return self.inner.run(names, feed)

    pairs, odd = be.graphs[S]
    be.graphs[S] = (Spy(pairs, sizes["pairs"]), Spy(odd, sizes["odd"]))
    for n in (1, 2, 3, 4, 5):
        be.run(_canvases(n))
    assert sizes == {"pairs": [2, 2, 4, 4], "odd": [1, 1, 1]}


def test_an_explicit_onnx_file_is_run_as_it_is(tiny_model_dir, monkeypatch):
    from retinacli.runtime import cpu_features

    monkeypatch.setattr(cpu_features, "has_avx512", lambda: True)
    plain = read_model_info(tiny_model_dir / "model.onnx")
    assert plain.avx512_path is None  # no switching away from the file the user named
    assert create_backend(plain, "onnxruntime", threads=1).path.name == "model.onnx"
    pairs = read_model_info(tiny_model_dir / "model.avx512.onnx")  # checked against its own sha256 entry
    assert pairs.sha256 == sha256_file(tiny_model_dir / "model.avx512.onnx")
    be = create_backend(pairs, "onnxruntime", threads=1)
    assert be.path.name == "model.avx512.onnx" and be.odd_path is None


def test_an_edited_pair_graph_is_refused_and_a_missing_one_falls_back(tiny_model_dir, tmp_path, monkeypatch):
    from retinacli.runtime import cpu_features

    monkeypatch.setattr(cpu_features, "has_avx512", lambda: True)
    folder = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.avx512.onnx").unlink()  # a copy without the optional graph runs model.onnx
    info = read_model_info(folder)
    assert info.avx512_path is None
    assert create_backend(info, "onnxruntime", threads=1).path.name == "model.onnx"
    (folder / "model.avx512.onnx").write_bytes((tiny_model_dir / "model.onnx").read_bytes())  # the wrong file
    with pytest.raises(ValueError, match="sha256 differs"):
        read_model_info(folder)
