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
    beside it: twice the work for a batch of one). ``more_sides``: {canvas side: (graph, odd graph or None)} for
    the smaller canvases the artefact also ships; a batch runs on the graphs of its own side. ``side``: the canvas
    side ``onnx_path`` must take (checked when given). ``path`` and ``odd_path`` name the main side's graphs."""

    name = "onnxruntime"

    def __init__(self, onnx_path: Path, threads: int = 0, providers: list[str] | None = None,
                 odd_path: Path | None = None, more_sides: dict[int, tuple[Path, Path | None]] | None = None,
                 side: int | None = None):
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

        def session(path: Path | None, side: int | None = None):
            if path is None:
                return None
            try:
                sess = ort.InferenceSession(str(path), so, providers=providers)
            except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail...)
                raise BackendUnavailable(f"ONNX Runtime cannot load {path}: {exc}") from None
            shape = sess.get_inputs()[0].shape
            if side is not None and list(shape[2:]) != [side, side]:
                raise BackendUnavailable(f"{path} takes {shape[2]} x {shape[3]} canvases, not {side} x {side}")
            return sess

        main = session(onnx_path, side)
        inp = main.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = main.get_outputs()[0].name
        side = int(inp.shape[2])
        self.graphs = {side: (main, session(odd_path, side))}
        for s, (path, odd) in (more_sides or {}).items():
            if int(s) in self.graphs:
                raise BackendUnavailable(f"two graphs given for the {s}-px canvas ({onnx_path}, {path})")
            self.graphs[int(s)] = (session(path, int(s)), session(odd, int(s)))
        self.canvas_sides = tuple(sorted(self.graphs))
        self.path = Path(onnx_path)
        self.odd_path = None if odd_path is None else Path(odd_path)
        self.max_batch = 0
        self.providers = main.get_providers()

    def _run(self, session, batch: np.ndarray) -> np.ndarray:
        return session.run([self.output_name], {self.input_name: batch})[0].astype(np.float32, copy=False)

    def run(self, batch: np.ndarray) -> np.ndarray:
        session, odd_session = self.graphs[check_batch(batch, self.canvas_sides)]
        n = len(batch)
        if odd_session is None or n % 2 == 0:
            return self._run(session, batch)
        last = self._run(odd_session, batch[-1:])
        return last if n == 1 else np.concatenate([self._run(session, batch[:-1]), last])

    def close(self) -> None:
        self.graphs = {}
        self.canvas_sides = ()
