"""Build a shipped model folder: model.onnx + model.pt + metadata.json (self-describing)."""
from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from retinacli import __version__
from retinacli.export.onnx_export import parity_check, torch_to_onnx
from retinacli.io.decode import decode_image
from retinacli.preprocess.normalise import ScaleSpec, prepare, scale_spec_of
from retinacli.runtime.artefact import AVX512_GRAPH, CANVASES, METADATA_FORMAT, sha256_file
from retinacli.runtime.cpu_features import has_avx512

PAIR_GRAPH_FILE = "model.avx512.onnx"


def _rgb(image: Path | np.ndarray) -> np.ndarray:
    """An image file decoded (RGB uint8 [H, W, 3]), or an already decoded array as it is."""
    return image if isinstance(image, np.ndarray) else decode_image(Path(image))


def parity_canvases(images: list[Path | np.ndarray], spec: ScaleSpec, seed: int = 0) -> np.ndarray:
    """Canvases uint8 [N, 3, S, S] (S = ``spec.canvas_px``) for the parity check: the given images (files, or RGB
    arrays already decoded) prepared as in `retina process` but all on that side, plus two random-noise canvases with
    the largest FOV (so the check never runs on nothing)."""
    spec = spec.at_side(spec.canvas_px)  # one side for all (no smaller canvas options)
    out = [prepare(_rgb(im), spec).canvas.transpose(2, 0, 1) for im in images]
    rng = np.random.default_rng(seed)
    side = spec.canvas_px
    yy, xx = np.mgrid[:side, :side]
    disc = (yy - side / 2) ** 2 + (xx - side / 2) ** 2 < (spec.fov_diameter_px / 2) ** 2
    for _ in range(2):
        noise = rng.integers(1, 256, size=(3, side, side), dtype=np.uint8) * disc
        out.append(noise.astype(np.uint8))
    return np.stack(out)


CANVAS_GRAPH_NAME = re.compile(r"model\.c[1-9]\d*(\.avx512)?\.onnx")  # what `canvas_graph_file` names, nothing else


def canvas_graph_file(side: int, pairs: bool = False) -> str:
    """File name of a smaller canvas side's graph: model.c928.onnx, or model.c928.avx512.onnx for its pair form."""
    return f"model.c{int(side)}{'.avx512' if pairs else ''}.onnx"


def check_canvas_sides(spec: ScaleSpec, downsampling: int) -> None:
    """ValueError unless every side of ``spec`` is a multiple of the network's ``downsampling`` and of the block size
    of the in-graph standardisation (``models.normalise.POOL_PX``), and the shift between the model's canvas and each
    smaller side ((canvas_px - side) / 2) is a multiple of ``downsampling``: then an image keeps the same pooling grid
    on every side, and only the width of the black border around its FOV differs."""
    from retinacli.models.normalise import POOL_PX

    factor = math.lcm(downsampling, POOL_PX)
    for side in spec.canvas_sides:
        if side % factor:
            raise ValueError(f"a {side}-px canvas does not fit this network: sides must be multiples of {factor}")
    for side in spec.canvas_options_px:
        if (spec.canvas_px - side) % (2 * downsampling):
            raise ValueError(f"canvas option {side} px: (canvas_px {spec.canvas_px} - {side}) / 2 must be a multiple "
                             f"of {downsampling}, the network's down-sampling, so images keep their pooling grid")


def side_agreement(checkpoint: Path, images: list[Path | np.ndarray], spec: ScaleSpec, side: int) -> dict:
    """How far the probabilities on the smaller canvas ``side`` are from the same images on the model's canvas
    (torch, FP32), over those of ``images`` that `retina process` runs on that side: both canvases are prepared
    identically up to an integer shift, so they differ only through the narrower black border, near the FOV rim.
    Returns images, max/mean |difference| and the share of FOV pixels that differ by more than 1e-3, inside the canvas
    FOV (None when no image runs on that side)."""
    from retinacli.runtime.torch_backend import TorchBackend

    shift = (spec.canvas_px - side) // 2
    max_d, sum_d, n_big, n_px, n_img = 0.0, 0.0, 0, 0, 0
    ref = TorchBackend(checkpoint, canvas_sides=(side, spec.canvas_px))
    try:
        for image in images:
            prep = prepare(_rgb(image), spec)
            if prep.transform.canvas_px != side:
                continue
            small = prep.canvas.transpose(2, 0, 1)[None]
            big = np.zeros((1, 3, spec.canvas_px, spec.canvas_px), np.uint8)
            big[:, :, shift:shift + side, shift:shift + side] = small
            d = np.abs(ref.run(np.ascontiguousarray(small))[0] -
                       ref.run(big)[0][:, shift:shift + side, shift:shift + side])[:, prep.canvas_fov]
            max_d, sum_d = max(max_d, float(d.max(initial=0.0))), sum_d + float(d.sum())
            n_big, n_px, n_img = n_big + int(np.count_nonzero(d > 1e-3)), n_px + d.size, n_img + 1
    finally:
        ref.close()
    if not n_px:
        return {"images": n_img, "max_abs_diff_in_fov": None, "mean_abs_diff_in_fov": None, "share_over_1e-3": None}
    return {"images": n_img, "max_abs_diff_in_fov": max_d, "mean_abs_diff_in_fov": sum_d / n_px,
            "share_over_1e-3": n_big / n_px}


def export_model_folder(checkpoint: Path, out_dir: Path, parity_images: list[Path], tolerance: float = 1e-4,
                        name: str | None = None, extra_metadata: dict | None = None, avx512_graph: bool = True,
                        extra_canvas_px: tuple[int, ...] = ()) -> dict:
    """checkpoint -> out_dir/{model.onnx, model.pt, metadata.json}, plus model.avx512.onnx (the image-pair graph
    that ONNX Runtime runs on AVX-512 CPUs, ``export.pair_graph``) unless ``avx512_graph`` is False, plus for each of
    ``extra_canvas_px`` (smaller canvas sides, ``ScaleSpec.canvas_options_px``) the same pair of graphs at that side
    (``canvas_graph_file``). The parity check is mandatory for every graph: on failure nothing in out_dir is
    replaced. ``name``: default the checkpoint's task (vessels, hemorrhage). Returns the metadata written."""
    import torch

    from retinacli.models.registry import count_parameters, downsampling_factor
    from retinacli.train.checkpoint import TRAINING_STATE_KEYS, load_checkpoint, model_from_checkpoint

    ck = load_checkpoint(checkpoint)
    pre = ck["preprocess"]
    task = ck.get("task", "vessels")
    model = model_from_checkpoint(ck)
    spec = scale_spec_of(pre, sorted(set(int(s) for s in extra_canvas_px)))  # ValueError for an unusable side
    check_canvas_sides(spec, downsampling_factor(model))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # every graph: (file name, canvas side, image-pair form?)
    plan = [("model.onnx", spec.canvas_px, False)] + ([(PAIR_GRAPH_FILE, spec.canvas_px, True)] if avx512_graph else [])
    for side in spec.canvas_options_px:
        plan += [(canvas_graph_file(side), side, False)] + \
            ([(canvas_graph_file(side, True), side, True)] if avx512_graph else [])
    staged = {final: out_dir / final.replace(".onnx", ".staged.onnx") for final, _, _ in plan}
    parity: dict[str, dict] = {}
    tmp_pt = out_dir / "model.pt.tmp"
    try:  # nothing in out_dir is replaced until every graph has passed
        rgbs = [decode_image(Path(p)) for p in parity_images]  # once, for every side and the side agreement
        canvases = {side: parity_canvases(rgbs, spec.at_side(side)) for side in spec.canvas_sides}
        for final, side, pairs in plan:
            torch_to_onnx(checkpoint, staged[final], pairs=pairs, side=side)
            # the pair graphs in batches of 3: their odd-batch path (a black canvas appended, its output dropped)
            parity[final] = {"reference": "torch (CPU, FP32)", "runtime": "onnxruntime CPU", "cpu_avx512": has_avx512(),
                             **({"batch_size": 3} if pairs else {}),
                             **parity_check(checkpoint, staged[final], canvases[side], tolerance,
                                            batch_size=3 if pairs else 4)}
        agreement = {side: side_agreement(checkpoint, rgbs, spec, side) for side in spec.canvas_options_px}
        slim = {k: v for k, v in ck.items() if k not in TRAINING_STATE_KEYS}
        torch.save(slim, tmp_pt)
    except BaseException:
        for path in [*staged.values(), tmp_pt]:
            path.unlink(missing_ok=True)
        raise
    for final, path in staged.items():
        path.replace(out_dir / final)
    for old in out_dir.iterdir():  # graphs of an earlier export must not stay behind (only names this code writes)
        if (old.name == PAIR_GRAPH_FILE or CANVAS_GRAPH_NAME.fullmatch(old.name)) and old.name not in staged:
            old.unlink(missing_ok=True)
    tmp_pt.replace(out_dir / "model.pt")
    graphs = {}
    if avx512_graph:
        graphs[AVX512_GRAPH] = {
            "file": PAIR_GRAPH_FILE, "runs_on": "ONNX Runtime on a CPU with AVX-512 (model.onnx elsewhere)",
            "form": "full-resolution level on image pairs, batch norm folded (retinacli.export.pair_graph)",
            "parity": parity[PAIR_GRAPH_FILE]}
    extra_canvases = {}
    for side in spec.canvas_options_px:
        plain, pairs = canvas_graph_file(side), canvas_graph_file(side, True)
        top = spec.at_side(side).fov_diameter_px
        extra_canvases[str(side)] = {
            "file": plain, "parity": parity[plain],
            **({"avx512_file": pairs, "avx512_parity": parity[pairs]} if avx512_graph else {}),
            "fov_diameter_px_max": top,
            "used_for": f"images whose FOV is drawn at most {top} px wide on the canvas (a {side}-px canvas keeps "
                        f"the {spec.margin_px}-px margin of the {spec.canvas_px}-px one); same weights as model.onnx",
            "vs_main_canvas": {"reference": "torch (CPU, FP32): the parity images that run on this side, against "
                                            "the same canvases inside the model's canvas; they differ only near the "
                                            "FOV rim",
                               **agreement[side]}}
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
                          "min_fov_diameter_px is set (preprocess); images whose FOV is drawn smaller may run on "
                          "the smaller canvas sides listed under 'canvases' (same weights, their own graphs)"},
        "output": {"name": "prob", "dtype": "float32", "shape": "[N, 1, H, W]", "meaning": f"{task} probability"},
        "preprocess": {**pre, "in_graph": "float cast, per-image per-channel standardisation over FOV pixels"},
        "threshold": float(ck["threshold"]),
        "training": {k: ck["provenance"].get(k) for k in ("data", "train_ids", "val_ids", "epoch", "step", "stage1")},
        "training_validation_metrics": {**ck.get("metrics", {}),
                                        "note": "per-epoch validation during training, at the training scale, on "
                                                "model canvases; see threshold_calibration for the shipped setting"},
        "threshold_calibration": ck.get("threshold_calibration"),
        "parity": parity["model.onnx"],
        **({"graphs": graphs} if graphs else {}),
        **({CANVASES: extra_canvases} if extra_canvases else {}),
        "sha256": {**{final: sha256_file(out_dir / final) for final in staged},
                   "model.pt": sha256_file(out_dir / "model.pt")},
        **(extra_metadata or {}),
    }
    tmp = out_dir / "metadata.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    tmp.replace(out_dir / "metadata.json")
    return meta
