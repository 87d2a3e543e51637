"""Build a shipped model folder: model.onnx + model.pt + metadata.json (self-describing)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from retinacli import __version__
from retinacli.export.onnx_export import parity_check, torch_to_onnx
from retinacli.io.decode import decode_image
from retinacli.preprocess.normalise import ScaleSpec, prepare, scale_spec_of
from retinacli.runtime.artefact import AVX512_GRAPH, METADATA_FORMAT, sha256_file
from retinacli.runtime.cpu_features import has_avx512

PAIR_GRAPH_FILE = "model.avx512.onnx"


def parity_canvases(images: list[Path], spec: ScaleSpec, seed: int = 0) -> np.ndarray:
    """Canvases uint8 [N, 3, S, S] for the parity check: the given images prepared as in `retina process`,
    plus two random-noise canvases with the largest FOV (so the check never runs on nothing)."""
    out = [prepare(decode_image(p), spec).canvas.transpose(2, 0, 1) for p in images]
    rng = np.random.default_rng(seed)
    side = spec.canvas_px
    yy, xx = np.mgrid[:side, :side]
    disc = (yy - side / 2) ** 2 + (xx - side / 2) ** 2 < (spec.fov_diameter_px / 2) ** 2
    for _ in range(2):
        noise = rng.integers(1, 256, size=(3, side, side), dtype=np.uint8) * disc
        out.append(noise.astype(np.uint8))
    return np.stack(out)


def export_model_folder(checkpoint: Path, out_dir: Path, parity_images: list[Path], tolerance: float = 1e-4,
                        name: str | None = None, extra_metadata: dict | None = None, avx512_graph: bool = True) -> dict:
    """checkpoint -> out_dir/{model.onnx, model.pt, metadata.json}, plus model.avx512.onnx (the image-pair graph
    that ONNX Runtime runs on AVX-512 CPUs, ``export.pair_graph``) unless ``avx512_graph`` is False. The parity
    check is mandatory for every graph: on failure nothing in out_dir is replaced. ``name``: default the
    checkpoint's task (vessels, hemorrhage). Returns the metadata written."""
    import torch

    from retinacli.models.registry import count_parameters
    from retinacli.train.checkpoint import load_checkpoint, model_from_checkpoint

    ck = load_checkpoint(checkpoint)
    pre = ck["preprocess"]
    task = ck.get("task", "vessels")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staged_onnx = out_dir / "model.staged.onnx"
    staged_pairs = out_dir / "model.avx512.staged.onnx"
    try:
        torch_to_onnx(checkpoint, staged_onnx)
        canv = parity_canvases(parity_images, scale_spec_of(pre))
        parity = parity_check(checkpoint, staged_onnx, canv, tolerance)
        graphs = {}
        if avx512_graph:
            torch_to_onnx(checkpoint, staged_pairs, pairs=True)
            # batches of 3: the odd-batch path of the graph (a black canvas appended, its output dropped) is checked
            graphs[AVX512_GRAPH] = {
                "file": PAIR_GRAPH_FILE, "runs_on": "ONNX Runtime on a CPU with AVX-512 (model.onnx elsewhere)",
                "form": "full-resolution level on image pairs, batch norm folded (retinacli.export.pair_graph)",
                "parity": {"reference": "torch (CPU, FP32)", "runtime": "onnxruntime CPU", "batch_size": 3,
                           "cpu_avx512": has_avx512(),
                           **parity_check(checkpoint, staged_pairs, canv, tolerance, batch_size=3)}}
    except Exception:
        staged_onnx.unlink(missing_ok=True)
        staged_pairs.unlink(missing_ok=True)
        raise
    slim = {k: v for k, v in ck.items() if k not in ("optimizer", "rng", "torch_rng", "epoch", "step", "best_f1", "seconds")}
    tmp_pt = out_dir / "model.pt.tmp"
    torch.save(slim, tmp_pt)
    staged_onnx.replace(out_dir / "model.onnx")
    if graphs:
        staged_pairs.replace(out_dir / PAIR_GRAPH_FILE)
    else:
        (out_dir / PAIR_GRAPH_FILE).unlink(missing_ok=True)  # a graph of an earlier export must not stay behind
    tmp_pt.replace(out_dir / "model.pt")
    model = model_from_checkpoint(ck)
    meta = {
        "format": METADATA_FORMAT,
        "name": name or task,
        "task": task,
        "retina_version": __version__,
        "exported_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "architecture": ck["model"],
        "parameters": count_parameters(model),
        "input": {"name": "image", "dtype": "uint8", "layout": "NCHW", "channels": "RGB",
                  "height": int(pre["canvas_px"]), "width": int(pre["canvas_px"]), "batch": "dynamic",
                  "note": "FOV-centred canvas, black outside the FOV; FOV diameter fov_diameter_px, or the "
                          "image's own FOV diameter clipped to [min_fov_diameter_px, fov_diameter_px] when "
                          "min_fov_diameter_px is set (preprocess)"},
        "output": {"name": "prob", "dtype": "float32", "shape": "[N, 1, H, W]", "meaning": f"{task} probability"},
        "preprocess": {**pre, "in_graph": "float cast, per-image per-channel standardisation over FOV pixels"},
        "threshold": float(ck["threshold"]),
        "training": {k: ck["provenance"].get(k) for k in ("data", "train_ids", "val_ids", "epoch", "step", "stage1")},
        "training_validation_metrics": {**ck.get("metrics", {}),
                                        "note": "per-epoch validation during training, at the training scale, on "
                                                "model canvases; see threshold_calibration for the shipped setting"},
        "threshold_calibration": ck.get("threshold_calibration"),
        "parity": {"reference": "torch (CPU, FP32)", "runtime": "onnxruntime CPU", "cpu_avx512": has_avx512(),
                   **parity},
        **({"graphs": graphs} if graphs else {}),
        "sha256": {"model.onnx": sha256_file(out_dir / "model.onnx"), "model.pt": sha256_file(out_dir / "model.pt"),
                   **{g["file"]: sha256_file(out_dir / g["file"]) for g in graphs.values()}},
        **(extra_metadata or {}),
    }
    tmp = out_dir / "metadata.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    tmp.replace(out_dir / "metadata.json")
    return meta
