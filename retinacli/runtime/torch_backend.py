"""PyTorch backend: runs a retina checkpoint (.pt) directly (needs the [train] extra)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from retinacli.runtime.base import BackendUnavailable, check_batch


class TorchBackend:
    name = "torch"

    def __init__(self, checkpoint_path: Path, threads: int = 0, device: str = "cpu",
                 canvas_sides: tuple[int, ...] | None = None):
        """``canvas_sides``: the canvas sides it accepts, default the checkpoint's own (the network is fully
        convolutional, so any side its levels divide runs)."""
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailable("the torch backend needs PyTorch: pip install 'retinacli[train]'") from exc
        from retinacli.models.normalise import ProbabilityGraph
        from retinacli.train.checkpoint import load_checkpoint, model_from_checkpoint

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        ckpt = load_checkpoint(checkpoint_path)
        self.graph = ProbabilityGraph(model_from_checkpoint(ckpt)).eval().to(device)
        self.canvas_sides = tuple(sorted(int(s) for s in (canvas_sides or (ckpt["preprocess"]["canvas_px"],))))
        self.max_batch = 0
        self.device = device

    def run(self, batch: np.ndarray) -> np.ndarray:
        check_batch(batch, self.canvas_sides)
        with self._torch.inference_mode():
            out = self.graph(self._torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        return out.float().cpu().numpy()

    def close(self) -> None:
        self.graph = None
