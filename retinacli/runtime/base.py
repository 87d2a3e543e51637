"""The Backend interface shared by every runtime (torch, ONNX Runtime, later TensorRT).

``run(batch)``: uint8 [N, 3, S, S] RGB canvases (black outside the FOV) -> float32 [N, C, S, S]
probabilities of the model's task (C = 1: vessel or haemorrhage; C = 3 for A/V: vessel, artery, vein).
S is one of ``canvas_sides``: the model's canvas, or a smaller side its artefact also ships a graph for
(``preprocess.normalise.ScaleSpec.canvas_options_px``); one batch has one side. A runtime with fixed input shapes
(ONNX graphs, TensorRT engines) holds one graph or engine per side. The pipeline never branches on the runtime.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    name: str          # "onnxruntime", "torch", "tensorrt"
    canvas_sides: tuple[int, ...]  # the square canvas sides (px) it runs, ascending
    max_batch: int     # largest batch the backend accepts in one call (0: no limit)

    def run(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class BackendUnavailable(RuntimeError):
    """The requested runtime cannot be used here (missing package, no GPU...). The message says what to install."""


def check_batch(batch: np.ndarray, canvas_sides: tuple[int, ...]) -> int:
    """Raise ValueError unless ``batch`` is uint8 [N, 3, S, S] with S in ``canvas_sides``; returns S."""
    if (batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1] != 3 or batch.shape[2] != batch.shape[3]
            or int(batch.shape[2]) not in canvas_sides):
        sides = " or ".join(str(s) for s in canvas_sides)
        raise ValueError(f"expected uint8 [N, 3, S, S] with S = {sides}, got {batch.dtype} {list(batch.shape)}")
    return int(batch.shape[2])
