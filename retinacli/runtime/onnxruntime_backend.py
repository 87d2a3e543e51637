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
    """Runs ``onnx_path``. ``odd_path``: when ``onnx_path`` is an image-pair graph (``export.pair_graph``), the plain
    graph of the same model, which runs the last image of an odd batch (the pair graph would process a black canvas
    beside it: twice the work for a batch of one)."""

    name = "onnxruntime"

    def __init__(self, onnx_path: Path, threads: int = 0, providers: list[str] | None = None,
                 odd_path: Path | None = None):
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

        def session(path: Path):
            try:
                return ort.InferenceSession(str(path), so, providers=providers)
            except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail...)
                raise BackendUnavailable(f"ONNX Runtime cannot load {path}: {exc}") from None

        self.session = session(onnx_path)
        self.odd_session = session(odd_path) if odd_path is not None else None
        self.path = Path(onnx_path)
        self.odd_path = None if odd_path is None else Path(odd_path)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        self.input_hw = (int(inp.shape[2]), int(inp.shape[3]))
        self.max_batch = 0
        self.providers = self.session.get_providers()

    def _run(self, session, batch: np.ndarray) -> np.ndarray:
        return session.run([self.output_name], {self.input_name: batch})[0].astype(np.float32, copy=False)

    def run(self, batch: np.ndarray) -> np.ndarray:
        check_batch(batch, self.input_hw)
        n = len(batch)
        if self.odd_session is None or n % 2 == 0:
            return self._run(self.session, batch)
        last = self._run(self.odd_session, batch[-1:])
        return last if n == 1 else np.concatenate([self._run(self.session, batch[:-1]), last])

    def close(self) -> None:
        self.session = None
        self.odd_session = None
