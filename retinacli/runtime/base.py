"""The Backend interface shared by every runtime (torch, ONNX Runtime, later TensorRT).

``run(batch)``: uint8 [N, 3, H, W] RGB canvases (black outside the FOV) -> float32 [N, C, H, W]
probabilities of the model's task (C = 1: vessel or haemorrhage; C = 3 for A/V: vessel, artery, vein).
The pipeline never branches on the runtime.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    name: str          # "onnxruntime", "torch", "tensorrt"
    input_hw: tuple[int, int]
    max_batch: int     # largest batch the backend accepts in one call (0: no limit)

    def run(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class BackendUnavailable(RuntimeError):
    """The requested runtime cannot be used here (missing package, no GPU...). The message says what to install."""


def check_batch(batch: np.ndarray, input_hw: tuple[int, int]) -> None:
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1] != 3 or tuple(batch.shape[2:]) != tuple(input_hw):
        raise ValueError(f"expected uint8 [N, 3, {input_hw[0]}, {input_hw[1]}], got {batch.dtype} {list(batch.shape)}")
