"""ONNX Runtime backend (CPU by default; CUDA provider when asked and available).

The intra-op threads do not spin while waiting for work: in `retina process` decoding and writing run in other
threads at the same time, and spinning threads took CPU from them (DRIVE test, 2-core Xeon: 2.4 -> 2.8 images/s
end to end).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from retinacli.runtime.base import BackendUnavailable, check_batch


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, onnx_path: Path, threads: int = 0, providers: list[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a base dependency
            raise BackendUnavailable("onnxruntime is not installed (pip install onnxruntime)") from exc
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = ort.get_available_providers()
        providers = [p for p in (providers or ["CPUExecutionProvider"]) if p in available] or ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(onnx_path), so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail...)
            raise BackendUnavailable(f"ONNX Runtime cannot load {onnx_path}: {exc}") from None
        self.path = Path(onnx_path)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        self.input_hw = (int(inp.shape[2]), int(inp.shape[3]))
        self.max_batch = 0
        self.providers = self.session.get_providers()

    def run(self, batch: np.ndarray) -> np.ndarray:
        check_batch(batch, self.input_hw)
        return self.session.run([self.output_name], {self.input_name: batch})[0].astype(np.float32, copy=False)

    def close(self) -> None:
        self.session = None
