"""Input normalisation used in training and baked into exported graphs.

``standardise_in_fov``: float tensor [N, 3, H, W] (H, W multiples of 16) of 0..255 RGB with black (0) outside the FOV ->
per-image, per-channel zero mean / unit variance computed over FOV pixels (any channel > 0); outside
stays 0. Making contrast per image removes most camera-to-camera exposure differences.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


POOL_PX = 16  # statistics are summed over 16x16 block means: short float32 sums, same result in every runtime


def _block_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over H and W of [N, C, H, W] (H, W multiples of POOL_PX) as block means summed, divided out later.

    A single 700k-term float32 sum differs between runtimes by ~1e-4 relative (ONNX Runtime sums
    sequentially, torch pairwise); 256-term block means followed by a few-thousand-term sum agree to ~1e-7.
    """
    return F.avg_pool2d(t, POOL_PX).sum(dim=(2, 3), keepdim=True)


def standardise_in_fov(x: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    fov = (x.sum(dim=1, keepdim=True) > 0).to(x.dtype)
    n = _block_sum(fov).clamp_min(1.0 / POOL_PX ** 2)
    mean = _block_sum(x * fov) / n
    var = _block_sum(((x - mean) * fov) ** 2) / n
    return (x - mean) / torch.sqrt(var + eps) * fov


class ProbabilityGraph(nn.Module):
    """Deployment wrapper: uint8 image [N, 3, H, W] -> probabilities float32 [N, C, H, W]: C = 1 for the vessel
    and haemorrhage models (sigmoid of the logit), the model's own ``probabilities`` otherwise (A/V: C = 3)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = standardise_in_fov(image.to(torch.float32))
        if hasattr(self.model, "probabilities"):
            return self.model.probabilities(x)
        return torch.sigmoid(self.model(x))
