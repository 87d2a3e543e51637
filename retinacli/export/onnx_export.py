"""torch checkpoint -> ONNX graph with the input normalisation inside (uint8 in, probability out).

Graph: input ``image`` uint8 [N, 3, S, S] (RGB, black outside the FOV; N dynamic, S fixed: the checkpoint's
canvas_px or a smaller side asked for), output ``prob`` float32 [N, C, S, S] (the probabilities of the model's task:
vessel or haemorrhage, C = 1; vessel, artery, vein for A/V, C = 3).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

OPSET = 17


def torch_to_onnx(checkpoint: Path, onnx_path: Path, pairs: bool = False, side: int | None = None) -> Path:
    """Export a retina checkpoint to ``onnx_path`` (written atomically). Returns the path.

    ``pairs``: the image-pair form for AVX-512 CPUs (``export.pair_graph``) instead of the plain graph.
    ``side``: the graph's canvas side, default the checkpoint's ``canvas_px`` (the network is fully convolutional;
    a side its levels do not divide raises ValueError)."""
    import torch

    from retinacli.models.normalise import ProbabilityGraph
    from retinacli.train.checkpoint import load_checkpoint, model_from_checkpoint

    ck = load_checkpoint(checkpoint)
    side = int(side or ck["preprocess"]["canvas_px"])
    model = model_from_checkpoint(ck).eval()
    if pairs:
        from retinacli.export.pair_graph import PairProbabilityGraph

        graph = PairProbabilityGraph(model).eval()
    else:
        graph = ProbabilityGraph(model).eval()
    dummy = torch.zeros(2, 3, side, side, dtype=torch.uint8)
    try:
        with torch.inference_mode():
            graph(dummy[:1])
    except RuntimeError as exc:  # e.g. a skip connection whose sizes no longer match
        raise ValueError(f"a {side}-px canvas does not fit {ck['model']['name']}: {exc}") from None
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_suffix(".onnx.tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (dummy,), str(tmp), input_names=["image"], output_names=["prob"],
                              dynamic_axes={"image": {0: "batch"}, "prob": {0: "batch"}}, opset_version=OPSET,
                              dynamo=False, do_constant_folding=True)
        import onnx

        onnx.checker.check_model(onnx.load(str(tmp)))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(onnx_path)
    return onnx_path


class ParityError(RuntimeError):
    """The exported graph's outputs differ from the reference by more than the tolerance."""


def parity_check(checkpoint: Path, onnx_path: Path, canvases: np.ndarray, tolerance: float = 1e-4,
                 batch_size: int = 4) -> dict:
    """Run torch and ONNX Runtime (CPU, FP32) on ``canvases`` uint8 [N, 3, H, W]; compare probabilities.

    Returns {"images", "max_abs_diff", "mean_abs_diff", "tolerance", "passed"}; raises ParityError on failure.
    """
    from retinacli.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from retinacli.runtime.torch_backend import TorchBackend

    ref = TorchBackend(checkpoint, canvas_sides=(int(canvases.shape[2]),))
    test = OnnxRuntimeBackend(onnx_path)
    max_d, sum_d, n_px = 0.0, 0.0, 0
    for i in range(0, len(canvases), batch_size):
        b = canvases[i:i + batch_size]
        a, t = ref.run(b), test.run(b)
        if not (np.isfinite(a).all() and np.isfinite(t).all()):
            raise ParityError("non-finite probabilities (NaN or inf) in the torch or ONNX Runtime output")
        d = np.abs(a - t)
        max_d = max(max_d, float(d.max()))
        sum_d += float(d.sum())
        n_px += d.size
    result = {"images": int(len(canvases)), "max_abs_diff": max_d, "mean_abs_diff": sum_d / max(n_px, 1),
              "tolerance": tolerance, "passed": bool(max_d <= tolerance)}
    if not result["passed"]:
        raise ParityError(f"ONNX Runtime vs torch: max |prob difference| {max_d:.3g} > tolerance {tolerance:g}")
    return result
